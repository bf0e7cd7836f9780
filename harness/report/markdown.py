"""Markdown export of the matrices, for a wiki page or a bug report.

Same order as every output: what flipped since the baseline first, then what differs from the
documents, then one table per scenario (rows = server node:bind, columns = client node:target).
"""
from __future__ import annotations

from pathlib import Path

from harness.matrix import Matrix, MatrixCell, MatrixReport
from harness.report import cells as words


def _esc(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def cell_text(cell: MatrixCell) -> str:
    """`**X** ≠O ΔO->X`: observed, then the expectation it misses, then the flip."""
    if cell.result.not_run:
        return f"\u2013 {cell.observed.detail} (exp {words.expected_text(cell)})"
    out = f"**{cell.observed.outcome.value}**"
    if cell.mismatch and cell.expected is not None:
        out += f" ≠{cell.expected.value}"
    elif cell.expected is None:
        out += " (exp ?)"
    if cell.flipped:
        out += f" Δ{cell.flip}"
    if cell.result.flaky:
        out += " ~flaky (first " + ", ".join(cell.result.attempt_summaries()) + ")"
    short = words.short(cell)
    if short and cell.observed.outcome.value in ("X", "B"):
        out += f" {short}"
    return out


def _table(matrix: Matrix) -> list[str]:
    lines = ["| server:bind \\ client:target | " + " | ".join(_esc(c) for c in matrix.columns) + " |",
             "| --- |" + " :---: |" * len(matrix.columns)]
    for row in matrix.rows:
        tds = [" / ".join(_esc(cell_text(c)) for c in matrix.at(row, column)) for column in matrix.columns]
        lines.append(f"| `{_esc(row)}` | " + " | ".join(tds) + " |")
    return lines


def render_markdown(report: MatrixReport) -> str:
    run, meta = report.run, report.run.meta
    lines = [f"# hvsock-matrix run {run.run_id}", ""]
    inventory = meta.get("inventory")
    if isinstance(inventory, dict):
        inventory = " ".join(str(v) for v in (inventory.get("name"), inventory.get("path")) if v)
    for key, value in (("incomplete", words.incomplete_note(meta)),
                       ("started", meta.get("started")), ("finished", meta.get("finished")),
                       ("inventory", inventory), ("baseline", report.baseline_label or "none"),
                       ("harness", meta.get("harness_version"))):
        if value:
            lines.append(f"- **{key}**: {_esc(value)}")
    for node, facts in sorted((meta.get("node_facts") or {}).items()):
        if isinstance(facts, dict):
            text = ", ".join(f"{k} {facts[k]}" for k in ("os", "kernel", "windows_build", "build")
                             if facts.get(k))
            lines.append(f"- **{_esc(node)}**: {_esc(text)}")
    lines += ["", f"## Changed since baseline: {len(report.flips)}", ""]
    lines += [f"- Δ {_esc(words.change_line(c))}" for c in report.flips] or (
        ["- (none)"] if report.baseline_label else ["- (no baseline)"])
    if report.flaky:
        lines += ["", f"## Flaky in this run (agreed only on a rerun): {len(report.flaky)}", ""]
        lines += [f"- ~ {_esc(words.flaky_line(c))}" for c in report.flaky]
    lines += ["", f"## Differs from the documented expectation: {len(report.mismatches)}", ""]
    lines += [f"- ≠ {_esc(words.change_line(c))}" for c in report.mismatches] or ["- (none)"]
    for matrix in report.matrices:
        lines += ["", f"## Scenario {matrix.scenario}", "", *_table(matrix)]
    lines += ["", "O = echo came back, X = connect failed, B = bind failed, E = harness/lab failure, "
              "n/a = not applicable; ≠O = documented O, Δ = changed since baseline.", ""]
    return "\n".join(lines)


def write_markdown(report: MatrixReport, path: Path) -> Path:
    from harness.results import write_text_atomic

    return write_text_atomic(Path(path), render_markdown(report))
