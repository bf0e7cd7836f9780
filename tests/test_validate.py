"""`hvsock-matrix validate` on the bad-input corpus and on the shipped files, as a user runs it.

Every file in tests/bad_input/ starts with `# expect: LINE: message`; validate must exit
non-zero with exactly one stderr line containing "PATH:LINE: message" and no traceback.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "bad_input").glob("*.yaml"))


def validate(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HVSOCK_MATRIX_LAB_NODE"}
    return subprocess.run([sys.executable, "-m", "harness.cli", "validate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def expectation(path: Path) -> str:
    """The file's first line; the corpus holds BOM, UTF-16 and non-UTF-8 files too."""
    raw = path.read_bytes()
    text = raw.decode("utf-16") if raw.startswith(b"\xff\xfe") else raw.decode("utf-8-sig", "replace")
    first = text.splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: LINE: message'"
    return first[len("# expect: "):]


@pytest.fixture(scope="module")
def corpus_results():
    with ThreadPoolExecutor(max_workers=4) as pool:
        rel = [str(p.relative_to(ROOT)) for p in CORPUS]
        return dict(zip(rel, pool.map(validate, rel), strict=False))


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_bad_file_gives_one_line_naming_file_and_line(corpus_results, path):
    rel = str(path.relative_to(ROOT))
    result = corpus_results[rel]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{rel}:{expectation(path)}" in lines[0]
    assert result.stdout == ""


def test_shipped_files_are_valid_and_counted():
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").glob("[abcu]*.yaml"))
    result = validate(*files, "inventory/hyperv-lab.example.yaml")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[-1] == "ok inventory/hyperv-lab.example.yaml (5 nodes)"
    assert any(line.startswith("ok scenarios/b-linux-vm-on-hyperv.yaml (4 cells)") for line in out)


def test_scenarios_expand_against_an_inventory():
    result = validate("--inventory", "inventory/hyperv-lab.example.yaml", "scenarios/c-kvm-vsock.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok scenarios/c-kvm-vsock.yaml (5 cells)"


def test_one_error_line_per_bad_file_among_good_ones():
    result = validate("scenarios/c-kvm-vsock.yaml", "tests/bad_input/sc-no-port.yaml",
                      "tests/bad_input/inv-bad-guid.yaml")
    assert result.returncode == 1
    assert result.stdout.strip() == "ok scenarios/c-kvm-vsock.yaml (5 cells)"
    assert len(result.stderr.splitlines()) == 2


def test_bad_inventory_option_is_one_line():
    result = validate("--inventory", "tests/bad_input/inv-bad-parent.yaml", "scenarios/c-kvm-vsock.yaml")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "tests/bad_input/inv-bad-parent.yaml:6: node g1: parent 'nohost'" in result.stderr


def test_missing_file_is_one_line():
    result = validate("scenarios/nope.yaml")
    assert result.returncode == 1
    assert result.stderr.strip() == "scenarios/nope.yaml:1: cannot read file: No such file or directory"
