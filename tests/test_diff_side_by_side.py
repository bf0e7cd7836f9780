"""`hvsock-matrix diff A B --html/--md`: two runs side by side, differing cells first, kernels on top."""
from __future__ import annotations

import html as htmllib
import re

from harness.cell import Cell
from harness.cli import main
from harness.outcome import Observation, Outcome
from harness.report.run_diff import compare_runs
from harness.results import Recorder, load_run

C1 = Cell("C", "vm21", "wildcard", "l1", "server", 1234, Outcome.O, label="C1")
C2 = Cell("C", "l1", "wildcard", "vm21", "parent", 4321, Outcome.O, label="C2")
L2L2 = Cell("C", "vm22", "wildcard", "vm21", "server", 1300, Outcome.X)
SELF = Cell("C", "vm21", "wildcard", "vm21", "loopback", 1301, None)
ONLY_B = Cell("C", "vm22", "loopback", "vm22", "loopback", 1302, None)


def _run(results_dir, run_id, kernel, observations, extra=()):
    rec = Recorder(results_dir, {"run_id": run_id})
    for node in ("l1", "vm21"):
        rec.set_node_facts(node, {"os": "linux", "kernel": kernel if node == "l1" else "6.1.0-56-amd64"})
    for cell, obs in observations:
        rec.record(cell, obs)
    for cell in extra:
        rec.record(cell, Observation(Outcome.O, elapsed_ms=5.0))
    return load_run(rec.finish())


def _pair(tmp_path):
    a = _run(tmp_path, "20261123T200000Z-000001", "6.1.0-56-amd64", [
        (C1, Observation(Outcome.O, elapsed_ms=59.0)),
        (C2, Observation(Outcome.O, elapsed_ms=61.0)),
        (L2L2, Observation(Outcome.X, errno_name="ETIMEDOUT", errno=110, elapsed_ms=2100.0)),
        (SELF, Observation(Outcome.X, errno_name="ENODEV", errno=19, elapsed_ms=30.0))])
    b = _run(tmp_path, "20261123T210000Z-000002", "7.2.13+deb14-amd64", [
        (C1, Observation(Outcome.O, elapsed_ms=75.0)),  # only the time changed: not a difference
        (C2, Observation(Outcome.X, errno_name="ECONNRESET", errno=104, elapsed_ms=1.0)),
        (L2L2, Observation(Outcome.X, errno_name="ECONNRESET", errno=104, elapsed_ms=3.0)),
        (SELF, Observation(Outcome.X, errno_name="ENODEV", errno=19, elapsed_ms=31.0))], extra=[ONLY_B])
    return a, b


def test_differing_cells_come_first_with_the_reason(tmp_path):
    a, b = _pair(tmp_path)
    diff = compare_runs(a, b)
    assert [(p.id, p.change) for p in diff.differing] == [
        (C2.id, "O->X"), (ONLY_B.id, "only in B"), (L2L2.id, "errno ETIMEDOUT (110)->ECONNRESET (104)")]
    assert [p.id for p in diff.same] == [C1.id, SELF.id]
    assert diff.pairs[:3] == diff.differing
    assert diff.kernels() == [("l1", "6.1.0-56-amd64", "7.2.13+deb14-amd64"),
                              ("vm21", "6.1.0-56-amd64", "6.1.0-56-amd64")]


def test_cli_writes_html_and_markdown_side_by_side(tmp_path, capsys):
    a, b = _pair(tmp_path)
    page, md = tmp_path / "out" / "diff.html", tmp_path / "out" / "diff.md"
    rc = main(["diff", str(a.path), str(b.path), "--no-matrix", "--html", str(page), "--md", str(md)])
    out = capsys.readouterr().out
    assert rc == 1  # C2 flipped O->X
    assert "3 of 5 cells differ (outcome or errno); kernels changed: l1 6.1.0-56-amd64 -> 7.2.13+deb14-amd64" in out
    text = htmllib.unescape(page.read_text())
    # header: both runs and each node's kernel in each run, the changed one marked
    assert "20261123T200000Z-000001" in text and "20261123T210000Z-000002" in text
    assert re.search(r'<tr class="kd"><th scope="row">l1</th><td class="k">6.1.0-56-amd64</td>'
                     r'<td class="k">7.2.13\+deb14-amd64</td>', text)
    differing = text[text.index('id="differing"'):text.index('id="same"')]
    assert differing.index(C2.id) < differing.index(ONLY_B.id) < differing.index(L2L2.id)  # the runs' cell order
    assert C1.id not in differing and "Cells that differ: 3 of 5" in differing
    row = differing[differing.index(C2.id):].split("</tr>")[0]  # both outcomes, errnos and times
    assert ">O<" in row and "61 ms" in row and ">X<" in row and "ECONNRESET (104)" in row and "1 ms" in row
    mdtext = md.read_text()
    assert "| l1 | 6.1.0-56-amd64 | 7.2.13+deb14-amd64 (changed) |" in mdtext
    assert mdtext.index("## Cells that differ: 3 of 5") < mdtext.index(f"`{C2.id}`") < \
        mdtext.index("## Cells that are the same: 2") < mdtext.index(f"`{C1.id}`")
    assert f"| `{L2L2.id}` | errno ETIMEDOUT (110)->ECONNRESET (104) | X | ETIMEDOUT (110) | 2100 ms | X |" in mdtext


def test_identical_runs_say_that_no_cell_differs(tmp_path, capsys):
    a, _ = _pair(tmp_path)
    md = tmp_path / "same.md"
    assert main(["diff", str(a.path), str(a.path), "--no-matrix", "--md", str(md)]) == 0
    assert "No cell differs" in md.read_text() and "0 of 4 cells differ" in capsys.readouterr().out
