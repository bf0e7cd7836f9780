"""`hvsock-matrix diff A B --md FILE`: the two runs side by side, for a bug report or a nightly mail."""
from __future__ import annotations

from pathlib import Path

from harness.report.diff_html import run_rows
from harness.report.markdown import _esc
from harness.report.run_diff import CellPair, RunDiff
from harness.results import write_text_atomic

HEAD = ["| cell | change | A | A errno | A time | B | B errno | B time |",
        "| --- | --- | :---: | --- | --- | :---: | --- | --- |"]


def _row(pair: CellPair) -> str:
    sa, sb = pair.sides
    cols = [f"`{pair.id}`", pair.change, sa.outcome or "-", sa.errno, sa.time, sb.outcome or "-", sb.errno, sb.time]
    return "| " + " | ".join(_esc(c) for c in cols) + " |"


def render_diff_markdown(diff: RunDiff) -> str:
    lines = [f"# hvsock-matrix diff: A {diff.a.run_id} -> B {diff.b.run_id}", "",
             "| | A | B |", "| --- | --- | --- |"]
    lines += [f"| {_esc(k)} | {_esc(va)} | {_esc(vb)} |" for k, va, vb in run_rows(diff.a, diff.b)]
    lines += ["", "## Node kernels", ""]
    kernels = diff.kernels()
    if kernels:
        lines += ["| node | kernel in A | kernel in B |", "| --- | --- | --- |"]
        lines += [f"| {_esc(n)} | {_esc(ka or '-')} | {_esc(kb or '-')}{' (changed)' if ka != kb else ''} |"
                  for n, ka, kb in kernels]
    else:
        lines.append("Neither run recorded node facts.")
    lines += ["", f"## Cells that differ: {len(diff.differing)} of {len(diff.pairs)}", ""]
    lines += HEAD + [_row(p) for p in diff.differing] if diff.differing else \
        ["No cell differs (outcomes and errnos are the same in both runs)."]
    lines += ["", f"## Cells that are the same: {len(diff.same)}", ""]
    if diff.same:
        lines += HEAD + [_row(p) for p in diff.same]
    return "\n".join(lines) + "\n"


def write_diff_markdown(diff: RunDiff, path: Path) -> Path:
    return write_text_atomic(Path(path), render_diff_markdown(diff))
