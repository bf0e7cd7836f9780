"""Results files are input: the one bounded reader (harness/results/reader.py) answers every hostile
file with one line naming it, in bounded time and memory, through every command that reads one
(`report`, `diff`, `expect`, `--baseline`). The corpus is tests/bad_input/results/ (the expected
message fragment is in tests/bad_input/results/EXPECT), plus cases too big or odd for git.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cell import Cell
from harness.errors import InputError
from harness.outcome import Observation, Outcome
from harness.results import CellResult, Run, load_run, reader, write_json_atomic
from tests.loopback_project import run_pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = ROOT / "tests" / "bad_input" / "results"
EXPECT = dict(line.split("\t", 1) for line in (CORPUS_DIR / "EXPECT").read_text().splitlines() if "\t" in line)
CORPUS = sorted(p for p in CORPUS_DIR.iterdir() if p.suffix == ".json")
HANG_GUARD_S = 30.0

GOOD_ID = "20261130T101500Z-1a2b3c"


def good_run() -> dict:
    cell = Cell("A", "h", "wildcard", "v", "parent", 19000, Outcome.O, label="A1")
    return Run(GOOD_ID, {}, [CellResult.from_cell(cell, Observation(Outcome.O, elapsed_ms=1.0))]).to_dict()


def refused(path: Path) -> str:
    started = time.perf_counter()
    with pytest.raises(InputError) as err:
        load_run(path)
    assert time.perf_counter() - started < HANG_GUARD_S
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message and len(message) <= 600, message
    return message


def test_every_corpus_file_has_an_expectation():
    assert sorted(p.name for p in CORPUS) == sorted(EXPECT)


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_file_is_refused_in_one_line(path):
    assert EXPECT[path.name] in refused(path)


def test_a_good_file_reads(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", good_run())
    assert load_run(path).run_id == GOOD_ID


def test_200000_nested_brackets_no_recursion(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(f'{{"run_id": "{GOOD_ID}", "cells": [' + "[" * 200_000 + "]" * 200_000 + "]}")
    assert "nested more than" in refused(path)
    unbalanced = tmp_path / "open.json"
    unbalanced.write_text("[" * 200_000)
    assert "nested more than" in refused(unbalanced)


def test_deep_nesting_inside_strings_is_text_not_nesting(tmp_path):
    data = good_run()
    data["cells"][0]["note"] = "[" * 10_000 + '\\"{'
    path = write_json_atomic(tmp_path / "r.json", data)
    assert load_run(path).cells[0].note.startswith("[[[")


@pytest.mark.parametrize("encoding, word", [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-32", "UTF-32"),
                                            ("latin-1", "not UTF-8")])
def test_other_encodings_are_named(tmp_path, encoding, word):
    data = good_run()
    data["cells"][0]["note"] = "café"
    path = tmp_path / "r.json"
    path.write_bytes(json.dumps(data, ensure_ascii=False).encode(encoding))
    message = refused(path)
    assert word in message and "UTF-8" in message


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "r.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(good_run()).encode())
    assert load_run(path).run_id == GOOD_ID


def test_size_is_capped_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    with open(path, "wb") as handle:  # a sparse 3 GB file: reading it would take the memory
        handle.truncate(3 * 1024**3)
    assert "over the" in refused(path)
    monkeypatch.setattr(reader, "MAX_BYTES", 100)
    small = write_json_atomic(tmp_path / "r.json", good_run())
    assert "over the 100 byte limit" in refused(small)


def test_fifo_folder_and_device_are_not_opened(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert "not a regular file" in refused(fifo)  # opening it would block for ever
    (tmp_path / "dir.json").mkdir()
    assert "is a directory" in refused(tmp_path / "dir.json")
    with pytest.raises(InputError, match="not a regular file"):
        load_run("/dev/zero")


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "x", "", 7, None, "20261130T101500Z-1a2b3c/..",
                                    "20261130T101500Z-1a2b3c\n"])
def test_run_id_must_be_a_run_id(tmp_path, run_id):
    data = good_run()
    data["run_id"] = run_id
    path = write_json_atomic(tmp_path / "r.json", data)
    assert "not a run id" in refused(path)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_every_command_that_reads_results_refuses_in_one_line(tmp_path):
    """report, diff and expect read results files through the bounded reader."""
    bad = tmp_path / "deep.json"
    bad.write_text("[" * 200_000)
    good = write_json_atomic(tmp_path / "good.json", good_run())
    scenario = tmp_path / "s.yaml"
    scenario.write_text("scenario: A\nport: 19000\ncells:\n  - label: A1\n    server: {on: h, bind: wildcard}\n"
                        "    client: {on: v, target: parent}\n    expect: O\n")
    for args in (["report", str(bad)], ["report", str(good), "--baseline", str(bad)], ["diff", str(good), str(bad)],
                 ["diff", str(bad), str(good)], ["expect", "--from", str(bad), "--into", str(scenario)]):
        assert one_line(cli(*args, cwd=tmp_path)).startswith(f"hvsock-matrix: {bad}"), args


def test_pytest_baseline_file_refused_in_one_line(tmp_path):
    from tests.loopback_project import make_project

    project = make_project(tmp_path / "p")
    bad = project / "utf16.json"
    bad.write_bytes(json.dumps(good_run()).encode("utf-16"))
    proc = run_pytest(project, "--baseline", str(bad), "--collect-only", "-q")
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"--baseline: {bad}:1: UTF-16 text; save the file as UTF-8" in proc.stderr
