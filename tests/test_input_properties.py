"""Property-based: any scenario or inventory document, generated or mutated, is accepted or answered
with one short line -- never another exception, never unbounded time.

hypothesis generates documents from the formats' own vocabulary (so many are nearly valid and
reach the deep checks), and mutates the shipped files with the hostile fragments the curated
corpus (tests/bad_input/) is made of: aliases, tags, merge keys, extra documents, tabs, BOMs,
huge numbers, control characters. Bounded for CI: a fixed example count, derandomized, with a
deadline per example.
"""
from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.commands.validate import check_file
from harness.errors import InputError
from harness.inventory import load_inventory

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = load_inventory(ROOT / "inventory" / "hyperv-lab.example.yaml")
SEEDS = [p.read_text(encoding="utf-8") for p in
         [ROOT / "scenarios" / "a-hyperv-wildcards.yaml", ROOT / "scenarios" / "c-kvm-vsock.yaml",
          ROOT / "inventory" / "hyperv-lab.example.yaml", ROOT / "inventory" / "lab-in-a-box.yaml"]]
PROPERTY_SETTINGS = settings(max_examples=200, deadline=timedelta(seconds=5), derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KEYS = ["scenario", "inventory", "port", "port_base", "cells", "axes", "server", "client", "on", "bind",
        "target", "expect", "label", "driver", "kind", "timeout", "max_cells", "pairs", "nodes", "name",
        "role", "os", "parent", "cid", "vm_id", "family", "lab_node", "access", "host", "user",
        "password_env", "connect_timeout", "server.on", "server.bind", "client.on", "client.target", "<<",
        "password", "api_key", "facts"]
WORDS = ["host", "vm", "linux-vm", "windows-host", "wildcard", "loopback", "parent", "children", "server",
         "node:kvm-host", "node:../x", "O", "X", "n/a", "probe", "socat", "command", "ssh", "local", "psexec",
         "linux", "windows", "vsock", "hyperv", "tcp", "b50f20e6-cf19-1796-ba60-d9cfe2d8fe29", "٣", "2024-02-30",
         "tester:pw", "u:pw@h.invalid", "{port:{x}}", "{port!z}", "{target}", "A\n", ".inf", "1e999"]
FRAGMENTS = ["&a ", "*a", "*b", "!!python/object:os.system ", "!!int ", "!!float ", "!!binary ", "!!timestamp ",
             "<<: *a\n", "\n---\n", "\t", "\ufeff", "\r\n", "{", "}", "[", "]", ": ", "- ", "? ", "'", '"', "\\",
             "9" * 60, "9" * 5000, " 2024-02-30", "[" * 200, "\x07", "\u2028", "%YAML 1.1\n", "&a [*a]", "~", "null", ".nan", "-.inf"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                    st.sampled_from(WORDS), st.text(max_size=20))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)),
    max_leaves=40)


def _answer(text: str) -> str | InputError:
    """validate's answer for one document: its ok line, or the InputError it raised."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "doc.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            return check_file(str(path), INVENTORY)
        except InputError as err:
            return err


def _assert_one_line(answer: str | InputError) -> None:
    if isinstance(answer, InputError):
        text = str(answer)
        assert text.startswith(answer.where) and ".yaml:" in answer.where
        line = answer.where.rsplit(":", 1)[1]
        assert line.isascii() and line.isdigit()
    else:
        text = answer
        assert text.startswith("ok ")
    assert "\n" not in text and "\r" not in text and len(text) <= 600


@PROPERTY_SETTINGS
@given(st.fixed_dictionaries({"scenario": st.sampled_from(["A", "B1", "x"])}, optional={"port": scalars}) | documents,
       documents)
def test_generated_documents_are_accepted_or_one_line(head, body):
    data = dict(head, **body) if isinstance(head, dict) and isinstance(body, dict) else head
    _assert_one_line(_answer(yaml.safe_dump(data, allow_unicode=True)))


@PROPERTY_SETTINGS
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.floats(0, 1), st.sampled_from(FRAGMENTS) | st.text(max_size=8),
                                                  st.integers(0, 12)), min_size=1, max_size=6))
def test_mutated_shipped_files_are_accepted_or_one_line(seed, edits):
    text = seed
    for where, fragment, cut in edits:
        at = int(where * len(text))
        text = text[:at] + fragment + text[at + cut:]
    _assert_one_line(_answer(text))
