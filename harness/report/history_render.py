"""History as HTML (one self-contained file) and Markdown: flaky cells on top, then changed,
infra, stable; the cells x runs grid with flips marked and each run's kernels in its column head.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from harness.report.history import ABSENT, PATTERNS, RECENT, CellHistory, History

TEMPLATES = Path(__file__).resolve().parent / "templates"
MEANING = {
    "flaky": "flips back and forth",
    "changed": "a new steady outcome",
    "infra": "harness or lab failures (E)",
    "stable": "the same outcome in every run",
    "absent": "in none of these runs",
}
SYMBOL = {"n/a": "-", ABSENT: "."}  # one character per run in strips; others: the outcome letter


def symbol(key: str) -> str:
    return SYMBOL.get(key, key[:1])


def css(key: str) -> str:
    return {"n/a": "NA", ABSENT: "AB"}.get(key, key[:1])


def strip(cell: CellHistory) -> str:
    return "".join(symbol(k) for k in cell.keys)


def short_run(run_id: str) -> str:
    """20261130T101810Z-abc123 -> 11-30 10:18."""
    if len(run_id) >= 13 and run_id[8] == "T":
        return f"{run_id[4:6]}-{run_id[6:8]} {run_id[9:11]}:{run_id[11:13]}"
    return run_id[:12]


def pattern_text(cell: CellHistory) -> str:
    if cell.pattern == "changed":
        return f"changed to {cell.latest} since {cell.since}"
    if cell.pattern == "flaky":
        return f"flaky: {len(cell.flips)} flips"
    if cell.pattern == "infra":
        return f"infra: {cell.errors} E"
    return cell.pattern


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _row(cell: CellHistory, runs: int) -> dict[str, Any]:
    flips = set(cell.flips)
    return {"id": cell.id, "pattern": cell.pattern, "text": pattern_text(cell),
            "expected": cell.expected or "?", "since": cell.since,
            "recent": cell.agree_text("recent"), "all": cell.agree_text("all"),
            "tds": [(symbol(k), css(k) + (" fl" if i in flips else ""), k) for i, k in enumerate(cell.keys)]}


def render_history_html(history: History, title: str | None = None, matrix_link: str | None = None) -> str:
    runs = [{"id": r.run_id, "short": short_run(r.run_id), "started": r.started or "",
             "kernels": r.kernel_text, "kchanged": history.kernel_changed(i), "incomplete": r.incomplete}
            for i, r in enumerate(history.runs)]
    groups = [(p, MEANING[p], [_row(c, len(runs)) for c in history.of(p)]) for p in PATTERNS if history.of(p)]
    return _environment().get_template("history.html.j2").render(
        title=title or f"hvsock-matrix history: {len(runs)} runs",
        runs=runs, groups=groups, counts=history.counts(), recent=RECENT, skipped=history.skipped,
        flaky=[_row(c, len(runs)) for c in history.of("flaky")],
        changed=[_row(c, len(runs)) for c in history.of("changed")],
        infra=[_row(c, len(runs)) for c in history.of("infra")],
        matrix_link=matrix_link)


def _esc(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_history_markdown(history: History) -> str:
    runs = history.runs
    span = f"{runs[0].run_id} .. {runs[-1].run_id}" if runs else "no runs"
    lines = [f"# hvsock-matrix history: {len(runs)} runs ({span})", ""]
    lines.append("- " + ", ".join(f"**{p}** {n}" for p, n in history.counts().items()))
    lines.append(f"- agreement: runs whose outcome (and errno, when documented) is the documented one, "
                 f"else the latest; last {RECENT} and all {len(runs)} runs; E never agrees")
    lines.append("- history: one character per run, oldest first: O X B E, `-` n/a, `.` not in that run")
    for path, why in history.skipped:
        lines.append(f"- not read: {_esc(path)}: {_esc(why)}")
    for pattern in PATTERNS:
        cells = history.of(pattern)
        if not cells:
            continue
        lines += ["", f"## {pattern.capitalize()} ({MEANING[pattern]}): {len(cells)}", "",
                  f"| cell | expected | now | pattern | agree last {RECENT} | agree all | history |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for c in cells:
            lines.append(f"| `{_esc(c.id)}` | {_esc(c.expected or '?')} | {_esc(c.latest)} | {_esc(pattern_text(c))} "
                         f"| {c.agree_text('recent')} | {c.agree_text('all')} | `{strip(c)}` |")
    lines += ["", "## Runs", "", "| # | run | started | kernels | |", "| --- | --- | --- | --- | --- |"]
    for i, r in enumerate(runs):
        marks = ", ".join(m for m, on in (("kernel changed", history.kernel_changed(i)),
                                          ("incomplete", r.incomplete)) if on)
        lines.append(f"| {i + 1} | {r.run_id} | {r.started or ''} | {_esc(r.kernel_text or '?')} | {marks} |")
    lines.append("")
    return "\n".join(lines)


def write_history_html(history: History, path: Path, **kwargs: Any) -> Path:
    from harness.results import write_text_atomic

    return write_text_atomic(Path(path), render_history_html(history, **kwargs))


def write_history_markdown(history: History, path: Path) -> Path:
    from harness.results import write_text_atomic

    return write_text_atomic(Path(path), render_history_markdown(history))
