"""`hvsock-matrix history`: planted stable, changed, flaky and infra cells in a synthetic history of
1,000 real results files are classified as planted; the HTML is read back from headless Chromium.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.report.history import build_history, classify, load_history, summary_from_data
from tests.synthetic_history import KERNEL_AFTER, KERNEL_BEFORE, run_id, write_history

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    results = tmp_path_factory.mktemp("history") / "reports"
    return results, write_history(results, runs=1000, cells=24)


def test_a_thousand_runs_classify_the_planted_cells(thousand):
    results, planted = thousand
    history = load_history(results, last=1000)
    assert len(history.runs) == 1000 and not history.skipped
    got = {c.id: c.pattern for c in history.cells}
    assert got == planted
    changed = history.cell(next(i for i in planted if i.startswith("P-CHANGED[")))
    assert changed.since == run_id(600) and changed.latest == "X ECONNRESET"
    assert changed.agree_all == (600, 1000)  # documented O: the 600 runs before the change agree
    errno_changed = history.cell(next(i for i in planted if i.startswith("P-CHANGED-ERRNO[")))
    assert errno_changed.since == run_id(800)  # an errno change alone is a change
    assert errno_changed.agree_all == (200, 1000)  # no documented expectation: the latest key is the reference
    flaky = history.cell(next(i for i in planted if i.startswith("P-FLAKY[")))
    assert len(flaky.flips) == 10 and flaky.agree_recent == (6, 7)  # X at run 995: one of the last 7
    gaps = history.cell(next(i for i in planted if i.startswith("P-STABLE-GAPS[")))
    assert gaps.agree_all[1] == 1000 - len([i for i in range(1000) if i % 7 == 3])  # absent runs not counted
    infra = history.cell(next(i for i in planted if i.startswith("P-INFRA[")))
    assert infra.errors == 3 and infra.agree_recent == (6, 7)  # E at run 997 never agrees
    # the flaky cells come first, then changed, infra, stable
    order = [c.pattern for c in history.cells]
    assert order == sorted(order, key=["flaky", "changed", "infra", "stable"].index)
    assert [history.kernel_changed(i) for i in range(1000)].count(True) == 1 and history.kernel_changed(500)
    assert history.runs[0].kernel_text == KERNEL_BEFORE and history.runs[-1].kernel_text == KERNEL_AFTER


def test_the_window_decides_the_pattern(thousand):
    results, _ = thousand
    recent = load_history(results, last=30)
    assert len(recent.runs) == 30 and recent.runs[-1].run_id == run_id(999)
    by_label = {c.label: c.pattern for c in recent.cells}
    assert by_label["P-CHANGED"] == "stable"  # changed 400 runs ago: steady in the last 30
    assert by_label["P-FLAKY"] == "flaky" and by_label["P-INFRA"] == "infra"


def test_classify_rules():
    assert classify(["O", "O", ".", "O"]) == ("stable", None)
    assert classify(["O", "E", "O"]) == ("infra", None)
    assert classify(["E", "E"]) == ("infra", None)
    assert classify(["O", "O", "X", "E", "X"]) == ("changed", 2)
    assert classify(["O", "X", "O"]) == ("flaky", None)
    assert classify([".", "."]) == ("absent", None)


def test_cli_prints_flaky_changed_infra_and_writes_html_and_md(thousand, tmp_path):
    results, planted = thousand
    proc = cli("history", "--last", "1000", "--results-dir", str(results), "--html", str(tmp_path / "h.html"),
               "--md", str(tmp_path / "h.md"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    counts = {p: list(planted.values()).count(p) for p in ("flaky", "changed", "infra", "stable")}
    assert re.search(rf"1000 runs .* {len(planted)} cells: {counts['flaky']} flaky, {counts['changed']} changed, "
                     rf"{counts['infra']} infra, {counts['stable']} stable", proc.stdout), proc.stdout
    assert "changed P-CHANGED[" in proc.stdout and f"since {run_id(600)}" in proc.stdout
    md = (tmp_path / "h.md").read_text()
    assert "## Flaky (flips back and forth): 1" in md and "| `P-FLAKY[" in md
    assert md.index("## Flaky") < md.index("## Changed") < md.index("## Infra") < md.index("## Stable")


def test_unreadable_files_are_named_and_skipped(tmp_path):
    results = tmp_path / "reports"
    write_history(results, runs=3, cells=8)
    (results / "history" / "20990101T000000Z-ffffff.json").write_text("[" * 200_000)
    proc = cli("history", "--results-dir", str(results), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert re.search(r"not read: .*20990101T000000Z-ffffff\.json: ", proc.stdout), proc.stdout
    assert "3 runs" in proc.stdout
    assert cli("history", "--results-dir", str(tmp_path / "none"), cwd=tmp_path).returncode == 1


def test_incomplete_runs_are_marked_and_can_be_left_out(tmp_path):
    first = {"run_id": run_id(0), "meta": {}, "cells": [
        {"id": "A1[a:b-from-c:d]", "observation": {"outcome": "O"}, "expected": "O"}]}
    killed = dict(first, run_id=run_id(1), meta={"incomplete": True})
    history = build_history([summary_from_data(first), summary_from_data(killed)])
    assert [r.incomplete for r in history.runs] == [False, True]


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, dict]] = []
        self.rows: list[dict] = []
        self.lists: dict[str, list[str]] = {}
        self.section: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.section = a.get("id")
        if tag == "tr" and "data-pattern" in a:
            self.rows.append(dict(a, tds=[]))
        if tag == "td" and self.rows and self.section == "grid":
            self.rows[-1]["tds"].append(a)
        if tag == "li" and "data-cell" in a and self.section:
            self.lists.setdefault(self.section, []).append(a["data-cell"])


@pytest.mark.chromium
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (CI installs Debian's chromium)")
def test_html_in_chromium_lists_flaky_on_top_and_marks_flips_and_kernels(tmp_path):
    results = tmp_path / "reports"
    planted = write_history(results, runs=40, cells=12)
    page = tmp_path / "history.html"
    proc = cli("history", "--last", "30", "--results-dir", str(results), "--html", str(page), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    probe = """<script>document.querySelectorAll("td.fl").forEach(function(td){
      td.setAttribute("data-shadow", getComputedStyle(td).boxShadow);});
      document.documentElement.setAttribute("data-rows", document.querySelectorAll("tr[data-pattern]").length);
    </script>"""
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", probe + "</body>"))
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
                           "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parser = Elements()
    parser.feed(proc.stdout)
    assert f'data-rows="{len(planted)}"' in proc.stdout  # every cell is a row after the browser built the page
    patterns = {row["data-cell"]: row["data-pattern"] for row in parser.rows}
    assert patterns == planted  # 40 runs, last 30: the changes at runs 24 and 32 fall in the window
    flaky = [c for c, p in planted.items() if p == "flaky"]
    assert parser.lists["flaky"] == flaky  # the list on top
    assert [r["data-pattern"] for r in parser.rows][:len(flaky)] == ["flaky"] * len(flaky)
    flaky_row = next(r for r in parser.rows if r["data-pattern"] == "flaky")
    framed = [td for td in flaky_row["tds"] if "fl" in td.get("class", "").split()]
    assert len(framed) == 8  # X at 13, 15, 28, 35 in runs 10..39: eight changes
    assert all(td["data-shadow"] not in ("", "none") for td in framed)  # the browser draws the frame
    heads = re.findall(r'<th class="run( kc)?[^"]*" data-run="([^"]+)" data-kernels="([^"]*)"', proc.stdout)
    assert len(heads) == 30
    assert [h[1] for h in heads if h[0]] == [run_id(20)]  # the kernel changed at run 20 (runs // 2)
    assert heads[0][2] == KERNEL_BEFORE and heads[-1][2] == KERNEL_AFTER


def test_the_nightly_matrix_links_its_history_and_lists_flaky_cells_on_top(tmp_path):
    from harness.cell import Cell
    from harness.outcome import Observation, Outcome
    from harness.report import write_run_reports
    from harness.results import Recorder, load_run

    steady = Cell("K", "l1", "wildcard", "vm21", "server", 30000, Outcome.O, label="K1")
    wobbly = Cell("K", "vm21", "wildcard", "l1", "parent", 30001, Outcome.O, label="K2")
    results = tmp_path / "reports"
    for night, outcome in enumerate([Outcome.O, Outcome.X, Outcome.O, Outcome.X, Outcome.O]):
        recorder = Recorder(results, {"run_id": run_id(night)})
        recorder.record(steady, Observation(Outcome.O))
        recorder.record(wobbly, Observation(outcome, errno_name="ETIMEDOUT" if outcome is Outcome.X else None))
        run = load_run(recorder.finish())
        _, paths = write_run_reports(run, results)
    page = paths["html"].read_text()
    nightly = page[page.index('<section id="nightly">'):page.index('<section id="flips">')]
    assert f'data-cell="{wobbly.id}"' in nightly and steady.id not in nightly
    assert page.index('id="nightly"') < page.index('id="flips"')  # on top
    history = paths["history"].read_text()
    assert paths["history"].parent == paths["html"].parent and 'href="matrix.html"' in history
    assert f'data-cell="{wobbly.id}" data-pattern="flaky"' in history
    assert f'data-cell="{steady.id}" data-pattern="stable"' in history
    assert history.count('class="run') == 5  # every night so far, this one included


def _run(index: int, observations: dict[str, dict]) -> dict:
    return {"run_id": run_id(index), "meta": {},
            "cells": [{"id": cid, "scenario": "S", "label": cid, "expected": None, "observation": obs}
                      for cid, obs in observations.items()]}


def test_history_changes_exactly_where_a_run_would_flip():
    """History's "changed" is the judgement's flip, not its own comparison: an errno change is a
    change; a run recorded before errnos were kept (X with no errno) next to X ECONNRESET is not."""
    from harness.judgement import flip_between
    from harness.outcome import Observation

    legacy = {"outcome": "X"}
    reset = {"outcome": "X", "errno_name": "ECONNRESET"}
    timedout = {"outcome": "X", "errno_name": "ETIMEDOUT"}
    bind = {"outcome": "B", "bind_errno_name": "EADDRINUSE", "errno_name": "ECONNRESET"}
    sequences = {"C-LEGACY": [legacy, reset, reset, reset], "C-ERRNO": [reset, reset, timedout, timedout],
                 "C-BIND": [bind, bind, bind, bind]}
    runs = [summary_from_data(_run(i, {cid: seq[i] for cid, seq in sequences.items()})) for i in range(4)]
    history = build_history(runs)
    got = {c.id: (c.pattern, c.since, c.flips) for c in history.cells}
    assert got["C-LEGACY"] == ("stable", None, [])
    assert got["C-ERRNO"] == ("changed", run_id(2), [2])
    assert got["C-BIND"] == ("stable", None, [])
    assert history.cell("C-BIND").latest == "B EADDRINUSE"  # a B's key carries the bind errno, not the connect one
    for seq in sequences.values():  # the same answer as judging each run against the one before
        runs_flip = [i for i in range(1, 4)
                     if flip_between(Observation.from_dict(seq[i - 1]), Observation.from_dict(seq[i]))]
        assert runs_flip == next(c.flips for c in history.cells if sequences[c.id] is seq)


def test_agreement_is_the_judgements_mismatch():
    """A documented X (no errno) agrees with any X; a documented X ECONNRESET only with that errno."""
    documented_any = {"outcome": "X", "errno_name": "ETIMEDOUT"}
    data = _run(0, {"D-ANY": documented_any, "D-ERRNO": documented_any})
    data["cells"][0]["expected"] = "X"
    data["cells"][1]["expected"], data["cells"][1]["expected_errno"] = "X", "ECONNRESET"
    history = build_history([summary_from_data(data)])
    assert history.cell("D-ANY").agree_all == (1, 1)
    assert history.cell("D-ERRNO").agree_all == (0, 1)
