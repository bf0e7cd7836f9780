"""The matrix printed at the end of `pytest scenarios/` and by `hvsock-matrix diff`: plain text.

Plain text on purpose: it survives CI logs, `| tee`, and copy-paste into a bug report, and it
uses the documents' own O/X symbols. Marks: `!O` = documented O but observed otherwise,
`*` = changed since the baseline (listed first, above the matrices).
"""
from __future__ import annotations

from harness.matrix import Matrix, MatrixCell, MatrixReport
from harness.report import cells as words


def cell_text(cell: MatrixCell) -> str:
    if cell.result.not_run:
        return "-" + (cell.expected.value if cell.expected is not None else "?")  # not run here, documented
    out = ("*" if cell.flipped else "") + cell.observed.outcome.value + ("~" if cell.result.flaky else "")
    if cell.mismatch and cell.expected is not None:
        out += f"!{cell.expected.value}"
    elif cell.expected is None:
        out += "?"
    return out


def render_matrix(matrix: Matrix) -> list[str]:
    corner = "server:bind \\ client:target"
    table = [[corner, *matrix.columns]]
    for row_key in matrix.rows:
        table.append([row_key, *("/".join(cell_text(c) for c in matrix.at(row_key, col)) or "."
                                 for col in matrix.columns)])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines: list[str] = []
    for index, row in enumerate(table):
        lines.append("  ".join(text.ljust(widths[i]) if i == 0 else text.center(widths[i])
                               for i, text in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def change_lines(report: MatrixReport) -> list[str]:
    """Flips first, then mismatches: the lines every output starts with (a run that did not finish says so first)."""
    note = words.incomplete_note(report.run.meta)
    lines = [note] if note else []
    if report.baseline_label:
        lines.append(f"Changed since baseline {report.baseline_label}: {len(report.flips)}")
        lines += [f"  * {words.change_line(c)}" for c in report.flips]
    if report.flaky:
        lines.append(f"Flaky in this run (agreed only on a rerun): {len(report.flaky)}")
        lines += [f"  ~ {words.flaky_line(c)}" for c in report.flaky]
    lines.append(f"Differs from the documented expectation: {len(report.mismatches)}")
    lines += [f"  ! {words.change_line(c)}" for c in report.mismatches]
    return lines


def render_terminal(report: MatrixReport) -> str:
    lines = change_lines(report)
    for matrix in report.matrices:
        lines += ["", f"Scenario {matrix.scenario}", *render_matrix(matrix)]
    lines += ["", "O echo came back, X connect failed, B bind failed, E harness/lab failure, "
              "n/a not applicable; X!O = documented O, O? = no documented expectation, "
              "* = changed since baseline, O~ = flaky (agreed only on a rerun), -O = not run here (no node), documented O"]
    return "\n".join(lines)
