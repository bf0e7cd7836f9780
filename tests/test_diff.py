"""`hvsock-matrix diff A B` and `hvsock-matrix report RESULTS` as a user runs them."""
from __future__ import annotations

import pytest

from harness.cell import Cell
from harness.cli import main
from harness.outcome import Observation, Outcome
from harness.results import Recorder

CELLS = [Cell("C", "kvm-host", "wildcard", "guest", "parent", 4321, Outcome.O, label="C2"),
         Cell("C", "guest", "wildcard", "kvm-host", "server", 1234, Outcome.O, label="C1"),
         Cell("C", "guest", "loopback", "kvm-host", "server", 1235, None)]


def night(results_dir, run_id, outcomes, extra=()):
    recorder = Recorder(results_dir, {"run_id": run_id})
    for cell, outcome in zip(CELLS, outcomes, strict=False):
        recorder.record(cell, Observation(outcome, errno_name="ECONNRESET" if outcome is Outcome.X else None))
    for cell in extra:
        recorder.record(cell, Observation(Outcome.O))
    return recorder.finish()


@pytest.fixture
def history(tmp_path):
    night(tmp_path, "20260101T000000Z-000001", [Outcome.O, Outcome.O, Outcome.X])
    night(tmp_path, "20260102T000000Z-000002", [Outcome.O, Outcome.X, Outcome.E],
          extra=[Cell("C", "guest", "self", "guest", "loopback", 1236, None)])
    return tmp_path


def test_diff_prints_flips_first_and_exits_1(history, capsys):
    rc = main(["diff", "previous", "last", "--results-dir", str(history)])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert out[:4] == [
        "diff 20260101T000000Z-000001 -> 20260102T000000Z-000002",
        "Changed since baseline 20260101T000000Z-000001: 2",
        "  * C1[guest:wildcard-from-kvm-host:server]: O -> X ECONNRESET (expected O)",
        "  * C[guest:loopback-from-kvm-host:server]: X -> E (expected ?)",
    ]
    assert out.index("Scenario C") > 4
    assert out[-2:] == ["Only in 20260102T000000Z-000002: 1", "  + C[guest:self-from-guest:loopback]: O"]


def test_diff_without_flips_exits_0_and_accepts_paths(history, capsys):
    last = history / "history" / "20260102T000000Z-000002.json"
    rc = main(["diff", str(last), str(history / "runs" / "20260102T000000Z-000002"), "--no-matrix"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[1] == "Changed since baseline 20260102T000000Z-000002: 0"
    assert "Scenario C" not in out


def test_diff_unknown_run_is_one_line(history, capsys):
    rc = main(["diff", "20200101T000000Z-gone", "last", "--results-dir", str(history)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "20200101T000000Z-gone: no such results file or run id" in err


def test_report_writes_html_and_markdown(history, tmp_path, capsys):
    html, md = tmp_path / "out" / "m.html", tmp_path / "out" / "m.md"
    rc = main(["report", "last", "--results-dir", str(history), "--html", str(html), "--md", str(md),
               "--baseline", "previous"])
    assert rc == 0
    assert capsys.readouterr().out.splitlines() == [f"html: {html}", f"md: {md}"]
    text = md.read_text()
    assert text.index("## Changed since baseline: 2") < text.index("## Scenario C")
    page = html.read_text()
    assert page.count('<table class="m"') == 1 and "C1[guest:wildcard-from-kvm-host:server]" in page
    # history strips: the earlier night then this one
    assert '<span class="hs">OX</span>' in page


def test_report_without_outputs_prints_the_terminal_matrix(history, capsys):
    results = history / "runs" / "20260101T000000Z-000001" / "results.json"
    assert main(["report", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Differs from the documented expectation: 0")
    assert "kvm-host:wildcard" in out


def test_report_on_a_broken_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "results.json"
    bad.write_text('{"run_id": "x",\n "cells": [}')
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hvsock-matrix: {bad}:2: not valid JSON") and err.count("\n") == 1
