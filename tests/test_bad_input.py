"""Hostile input, as a user (or an attacker) would write it: every file is answered with one line.

The curated corpus is tests/bad_input/*.yaml (first line `# expect: LINE: message`, checked by
tests/test_validate.py); tests/bad_input/ok/ holds tricky files that are valid (BOM + CRLF,
flow style, a date-like title, merge keys). Here: each corpus file is answered (never a hang:
a generous guard, not a speed goal; the 2 s goal is measured by benchmarks/bench_bad_input.py)
and under a memory cap (RLIMIT_AS in the subprocess), the cases too big or too odd to
keep in git (1 MB name, 2 GB file, FIFO, directory and device named *.yaml, empty folder) are
made on the fly, and pytest collection names every bad scenario file instead of a traceback or
silence.
"""
from __future__ import annotations

import importlib.metadata
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.commands.validate import check_file
from harness.errors import InputError
from tests.test_validate import expectation

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "bad_input").glob("*.yaml"))
OK_CORPUS = sorted((ROOT / "tests" / "bad_input" / "ok").glob("*.yaml"))
MEMORY_CAP = 1024 * 1024 * 1024  # address space of the validate process, bytes
HANG_GUARD_S = 30.0  # far above the measured ~0.07 s: catches a hang, not a slowdown
SECRET = "Hunter2Secret"  # the password planted in the corpus's credential cases


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def validate(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HVSOCK_MATRIX_LAB_NODE"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "harness.cli", "validate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, preexec_fn=_cap_memory)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_each_corpus_file_is_refused_in_one_line(path):
    started = time.perf_counter()
    with pytest.raises(InputError) as err:
        check_file(str(path))
    elapsed = time.perf_counter() - started
    assert elapsed < HANG_GUARD_S, f"{path.name}: {elapsed:.2f}s"
    assert "\n" not in str(err.value) and len(str(err.value)) <= 600
    assert SECRET not in str(err.value)


def test_whole_corpus_under_a_memory_cap_in_one_process():
    """All corpus files in one validate run whose address space is capped: one line each."""
    rel = [str(p.relative_to(ROOT)) for p in CORPUS]
    result = validate(*rel)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(rel), result.stderr[-2000:]
    assert [line.split(":", 1)[0] for line in lines] == rel
    assert SECRET not in result.stderr


def test_valid_but_tricky_files_are_accepted():
    result = validate(*(str(p.relative_to(ROOT)) for p in OK_CORPUS))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(OK_CORPUS)


def test_megabyte_name_is_one_short_line(tmp_path):
    (tmp_path / "inv.yaml").write_text("inventory: lab\nnodes:\n  - name: " + "h" * 1_000_000 + "\n    role: host\n    os: linux\n")
    line = one_line_error(validate("inv.yaml", cwd=tmp_path))
    assert line == "inv.yaml:3: a value of 1000000 characters (limit 65536)"


def test_two_gigabyte_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(2 * 1024 ** 3)  # sparse: costs no disk
    started = time.monotonic()
    line = one_line_error(validate("big.yaml", cwd=tmp_path))
    assert line == f"big.yaml:1: file of {2 * 1024 ** 3} bytes is over the 4194304 byte limit"
    assert time.monotonic() - started < 60


def test_fifo_named_yaml_is_named_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")  # opening it would block forever
    line = one_line_error(validate(".", cwd=tmp_path))
    assert line == "pipe.yaml:1: not a regular file (a FIFO, socket or device is never read)"


def test_device_behind_a_symlink_is_not_read(tmp_path):
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    assert one_line_error(validate("zero.yaml", cwd=tmp_path)) == \
        "zero.yaml:1: not a regular file (a FIFO, socket or device is never read)"


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no yaml here\n")
    assert one_line_error(validate("empty", cwd=tmp_path)) == "empty: no *.yaml or *.yml file in this folder"


def test_directory_given_as_a_file_is_one_line(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    assert one_line_error(validate("dir.yaml", cwd=tmp_path)) == "dir.yaml: no *.yaml or *.yml file in this folder"


def test_explicit_cells_over_the_cap_and_how_to_raise_it(tmp_path):
    cells = "".join(f"  - {{server: {{on: vm, bind: {3 + i}}}, client: {{on: host, target: parent}}}}\n" for i in range(30))
    (tmp_path / "sc.yaml").write_text("scenario: A\nport: 19000\nmax_cells: 20\ncells:\n" + cells)
    line = one_line_error(validate("sc.yaml", cwd=tmp_path))
    assert line == ("sc.yaml:4: scenario expands to 30 cells, over the limit of 20; "
                    "raise it with `max_cells: 30` at the top (at most 1000000)")
    (tmp_path / "sc.yaml").write_text("scenario: A\nport: 19000\nmax_cells: 30\ncells:\n" + cells)
    assert validate("sc.yaml", cwd=tmp_path).returncode == 0


def test_selectors_times_nodes_over_the_cap_during_expansion(tmp_path):
    nodes = "".join(f"  - {{name: g{i}, role: vm, parent: h, os: linux, cid: {3 + i}}}\n" for i in range(40))
    (tmp_path / "inv.yaml").write_text("inventory: lab\nnodes:\n  - {name: h, role: host, os: linux}\n" + nodes)
    (tmp_path / "sc.yaml").write_text("scenario: A\nport: 19000\nmax_cells: 100\naxes:\n  server.on: [vm]\n"
                                      "  server.bind: [wildcard]\n  client.on: [vm]\n  client.target: [server]\n")
    line = one_line_error(validate("--inventory", "inv.yaml", "sc.yaml", cwd=tmp_path))
    assert line.startswith("sc.yaml:4: scenario expands to more than 100 cells once matched against the inventory")


# --- pytest collection: every scenario file is collected or named with its error ---------------
def _plugin_args() -> list[str]:
    installed = any(ep.name == "hvsock_matrix" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "harness.plugin"]


def run_collect(project: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HVSOCK_MATRIX_LAB_NODE"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", *_plugin_args(), "-p", "no:cacheprovider",
                           "--collect-only", "-q", "scenarios"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300, preexec_fn=_cap_memory)


@pytest.fixture
def scenarios_project(tmp_path):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def test_collection_names_every_bad_scenario_file(scenarios_project):
    folder = scenarios_project / "scenarios"
    picked = [p for p in CORPUS if p.name.startswith("sc-")]
    for p in picked:
        (folder / p.name).write_bytes(p.read_bytes())
    result = run_collect(scenarios_project)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in out and "INTERNALERROR" not in out
    for p in picked:  # the same one line as validate gives
        assert f"scenarios/{p.name}:{expectation(p)}" in out, f"{p.name} not named with its error"
    assert SECRET not in out


def test_collection_takes_bom_crlf_and_flow_style_files(scenarios_project):
    folder = scenarios_project / "scenarios"
    for p in OK_CORPUS:
        (folder / p.name).write_bytes(p.read_bytes())  # the inventory among them is ignored by rule
    result = run_collect(scenarios_project)
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    for label in ("BOM1", "FLOW1", "DATE1", "MERGE1", "MERGE2"):
        assert any(f"::{label}[" in i for i in ids), (label, result.stdout)


def test_collection_reports_a_yaml_file_that_is_neither(scenarios_project):
    (scenarios_project / "scenarios" / "notes.yaml").write_text("- just a list\n")
    result = run_collect(scenarios_project)
    assert result.returncode != 0
    assert "scenarios/notes.yaml:1: neither a scenario nor an inventory file" in result.stdout
