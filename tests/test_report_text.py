"""Markdown export and the terminal matrix: same layout, flips listed before anything else."""
from __future__ import annotations

from harness.cell import Cell
from harness.matrix import build_report
from harness.outcome import Observation, Outcome
from harness.report.markdown import render_markdown
from harness.report.terminal import render_terminal
from harness.results import CellResult, Run


def run_pair():
    """Baseline run and tonight's run of three B cells: B2 flipped O->X, B3 unknown expectation."""
    def cells(b2: Observation):
        spec = [("B1", "win-host", "wildcard", "linux-vm", "parent", Outcome.O, Observation(Outcome.O, elapsed_ms=4)),
                ("B2", "linux-vm", "wildcard", "win-host", "server", Outcome.O, b2),
                ("B3", "linux-vm", "wildcard", "linux-vm", "loopback", None,
                 Observation(Outcome.B, bind_errno_name="EADDRINUSE", bind_errno=98))]
        return [CellResult.from_cell(Cell("B", s, b, c, t, 19000, e, label=l), o) for l, s, b, c, t, e, o in spec]

    before = Run("20260101T000000Z-aaaaaa", {"started": "2026-01-01T00:00:00Z"}, cells(Observation(Outcome.O)))
    after = Run("20260102T000000Z-bbbbbb",
                {"started": "2026-01-02T00:00:00Z", "node_facts": {"linux-vm": {"os": "linux", "kernel": "6.8.0"}},
                 "inventory": {"name": "hyperv-lab", "path": "inventory/hyperv-lab.yaml"}},
                cells(Observation(Outcome.X, errno_name="ETIMEDOUT", errno=110, elapsed_ms=2003)))
    return before, after


def test_terminal_lists_flips_first_then_the_matrix():
    before, after = run_pair()
    text = render_terminal(build_report(after, baseline=before))
    lines = text.splitlines()
    assert lines[0] == "Changed since baseline 20260101T000000Z-aaaaaa: 1"
    assert lines[1] == "  * B2[linux-vm:wildcard-from-win-host:server]: O -> X ETIMEDOUT (110) 2003 ms (expected O)"
    assert lines.index("Scenario B") > 1
    header = lines[lines.index("Scenario B") + 1]
    assert header.split() == ["server:bind", "\\", "client:target", "linux-vm:parent", "win-host:server",
                              "linux-vm:loopback"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[lines.index("Scenario B") + 3:] if line.strip()
            and ":" in line.split()[0] and not line.startswith("O echo")}
    assert rows == {"win-host:wildcard": ["O", ".", "."], "linux-vm:wildcard": [".", "*X!O", "B?"]}


def test_terminal_without_baseline_has_no_flip_section():
    _, after = run_pair()
    text = render_terminal(build_report(after))
    assert "Changed since baseline" not in text
    assert text.splitlines()[0] == "Differs from the documented expectation: 1"


def test_markdown_tables_and_order():
    before, after = run_pair()
    md = render_markdown(build_report(after, baseline=before))
    assert md.startswith("# hvsock-matrix run 20260102T000000Z-bbbbbb\n")
    assert "- **inventory**: hyperv-lab inventory/hyperv-lab.yaml" in md
    assert "- **linux-vm**: os linux, kernel 6.8.0" in md
    flips, mismatches, matrix = (md.index("## Changed since baseline: 1"),
                                 md.index("## Differs from the documented expectation: 1"),
                                 md.index("## Scenario B"))
    assert flips < mismatches < matrix
    table = md[matrix:].split("\n\n")[1].splitlines()
    assert table[0] == "| server:bind \\ client:target | linux-vm:parent | win-host:server | linux-vm:loopback |"
    assert table[1] == "| --- | :---: | :---: | :---: |"
    assert table[2] == "| `win-host:wildcard` | **O** |  |  |"
    assert table[3] == ("| `linux-vm:wildcard` |  | **X** ≠O ΔO->X ETIMEDOUT (110) 2003 ms "
                        "| **B** (exp ?) EADDRINUSE (98) |")


def test_markdown_escapes_pipes_in_tokens():
    c = CellResult.from_cell(Cell("Z", "a|b", "wildcard", "c", "parent", 1, None), Observation(Outcome.O))
    md = render_markdown(build_report(Run("r", {}, [c])))
    assert "| `a\\|b:wildcard` | **O** (exp ?) |" in md
