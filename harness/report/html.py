"""The HTML matrix: one self-contained file (inline CSS and JS, no network) rendered by Jinja2.

The view model is flattened to plain strings here so the template stays a simple loop; that is
also what keeps a 10,000-cell report fast to render (see benchmarks/bench_report.py).
"""
from __future__ import annotations

import base64
import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.matrix import Matrix, MatrixReport
from harness.outcome import Outcome
from harness.report import cells as words

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Click-panel details above this size are embedded gzip+base64 (decoded by the browser's
# DecompressionStream on the first click): what keeps a 10,000-cell report under 5 MB.
INLINE_DETAILS_LIMIT = 256 * 1024
# Above this many cells the history strips stay plain letters (colouring them costs ~11 DOM
# nodes per cell, which is what makes a huge page slow to open).
COLOUR_STRIPS_UP_TO = 3000


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _details_script(data: Any, inline_limit: int) -> tuple[str, Markup]:
    """(encoding, text) safe inside <script>: JSON with every '<' escaped, or gzip+base64."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(text) <= inline_limit:
        return "json", Markup(text.replace("<", "\\u003c"))
    packed = base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0))
    return "gzip+base64", Markup(packed.decode("ascii"))


def _matrix_view(matrix: Matrix, details: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for row in matrix.rows:
        tds = []
        for column in matrix.columns:
            entries = []
            for cell in matrix.at(row, column):
                if cell.result.not_run:
                    details.append(words.details(cell))
                    entries.append({"cls": "k NR", "i": len(details) - 1, "title": words.title(cell), "sym": "\u2013",
                                    "sub": f"{cell.observed.detail} · exp {words.expected_text(cell)}",
                                    "strip": "", "flip": None, "mm": False, "flaky": None})
                    continue
                classes = ["k", words.css_class(cell.observed.outcome)]
                if cell.mismatch:
                    classes.append("mm")
                if cell.flipped:
                    classes.append("fl")
                if cell.result.flaky:
                    classes.append("fk")
                details.append(words.details(cell))
                entries.append({
                    "cls": " ".join(classes),
                    "i": len(details) - 1,
                    "title": words.title(cell),
                    "sym": cell.observed.outcome.value,
                    "sub": " · ".join(x for x in ("exp " + words.expected_text(cell), words.short(cell)) if x),
                    "strip": words.strip(cell),
                    "flip": cell.flip,
                    "flaky": ", ".join(cell.result.attempt_summaries()) if cell.result.flaky else None,
                    "mm": cell.mismatch,
                })
            tds.append(entries)
        rows.append((row, tds))
    return {"scenario": matrix.scenario, "columns": matrix.columns, "rows": rows,
            "count": sum(len(v) for v in matrix.grid.values())}


def _change_view(cells) -> list[dict[str, Any]]:
    return [{"line": words.change_line(c), "cls": words.css_class(c.observed.outcome)} for c in cells]


def _meta_view(report: MatrixReport) -> dict[str, Any]:
    meta = report.run.meta
    inventory = meta.get("inventory")
    if isinstance(inventory, dict):
        inventory = " ".join(str(v) for v in (inventory.get("name"), inventory.get("path")) if v)
    items = [("incomplete", words.incomplete_note(meta)), ("run", report.run.run_id), ("started", meta.get("started")),
             ("finished", meta.get("finished")), ("inventory", inventory),
             ("baseline", report.baseline_label or "none"),
             ("harness", meta.get("harness_version")),
             ("pytest args", " ".join(meta.get("pytest_args") or []) or None)]
    counts = meta.get("counts") or {}
    facts = []
    for node, data in sorted((meta.get("node_facts") or {}).items()):
        if isinstance(data, dict):
            text = ", ".join(f"{k}: {data[k]}" for k in ("os", "kernel", "windows_build", "build",
                                                            "hostname", "socat_version")
                             if data.get(k) not in (None, ""))
        else:
            text = str(data)
        facts.append((node, text))
    return {"items": [(k, v) for k, v in items if v], "counts": counts, "facts": facts}


def render_html(report: MatrixReport, history_runs: int | None = None,
                inline_limit: int = INLINE_DETAILS_LIMIT, nightly: dict[str, Any] | None = None) -> str:
    """nightly: {"link": "history.html", "runs": N, "flaky": [(cell id, text)]} shown on top when given."""
    details: list[dict[str, Any]] = []
    matrices = [_matrix_view(m, details) for m in report.matrices]
    history_runs = len(report.history) if history_runs is None else history_runs
    encoding, payload = _details_script(details, inline_limit)
    return _environment().get_template("matrix.html.j2").render(
        run=report.run,
        meta=_meta_view(report),
        flips=_change_view(report.flips),
        mismatches=_change_view(report.mismatches),
        flaky=[{"line": words.flaky_line(c), "cls": words.css_class(c.observed.outcome), "id": c.id}
               for c in report.flaky],
        matrices=matrices,
        details=payload,
        details_encoding=encoding,
        colour_strips=len(details) <= COLOUR_STRIPS_UP_TO,
        history_runs=history_runs,
        baseline=report.baseline_label,
        outcomes=[(o.value, words.css_class(o), words.MEANING[o]) for o in Outcome],
        nightly=nightly,
    )


def write_html(report: MatrixReport, path: Path, nightly: dict[str, Any] | None = None) -> Path:
    from harness.results import write_text_atomic

    return write_text_atomic(Path(path), render_html(report, nightly=nightly))
