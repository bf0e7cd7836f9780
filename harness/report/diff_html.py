"""`hvsock-matrix diff A B --html FILE`: the two runs side by side, one self-contained page."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.report.html import _environment
from harness.report.run_diff import CellPair, RunDiff
from harness.results import Run, write_text_atomic

CSS = {"O": "O", "X": "X", "B": "B", "E": "E", "-": "NA"}


def run_rows(a: Run, b: Run) -> list[tuple[str, str, str]]:
    """(what, in A, in B) for the runs' header lines; shared with the Markdown output."""
    def inventory(run: Run) -> str:
        inv = run.meta.get("inventory")
        if isinstance(inv, dict):
            return " ".join(str(v) for v in (inv.get("name"), inv.get("path")) if v)
        return str(inv or "")

    rows = [("run", a.run_id, b.run_id),
            ("started", str(a.meta.get("started") or ""), str(b.meta.get("started") or "")),
            ("inventory", inventory(a), inventory(b)),
            ("cells", str(len(a.cells)), str(len(b.cells)))]
    return [r for r in rows if r[1] or r[2]]


def _pair_view(pair: CellPair) -> dict[str, Any]:
    sa, sb = pair.sides
    detail = " | ".join(f"{side}: {s.detail}" for side, s in (("A", sa), ("B", sb)) if s.detail)
    return {"id": pair.id, "change": pair.change, "a": sa, "b": sb, "detail": detail,
            "a_cls": CSS.get(sa.outcome, ""), "b_cls": CSS.get(sb.outcome, "")}


def render_diff_html(diff: RunDiff) -> str:
    return _environment().get_template("diff.html.j2").render(
        a=diff.a, b=diff.b, runs=run_rows(diff.a, diff.b), kernels=diff.kernels(),
        differing=[_pair_view(p) for p in diff.differing], same=[_pair_view(p) for p in diff.same],
        total=len(diff.pairs))


def write_diff_html(diff: RunDiff, path: Path) -> Path:
    return write_text_atomic(Path(path), render_diff_html(diff))
