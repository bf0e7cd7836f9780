"""What a cell and a run look like in pytest's own outputs: JUnit properties, the terminal
matrix, pytest-html's summary. Plain functions and one small pytest-html plugin; the hooks that
call them live in harness/lifecycle.py.
"""
from __future__ import annotations

import html as _html
from pathlib import Path
from typing import Any

from harness.cell import Cell
from harness.judgement import Judgement
from harness.outcome import Observation


def _errno_text(name: str | None, number: int | None) -> str:
    return f"{name or ''} {number if number is not None else ''}".strip()


def cell_properties(cell: Cell, observation: Observation, baseline: Observation | None,
                    judgement: Judgement) -> list[tuple[str, str]]:
    """JUnit XML (pytest --junitxml) properties of one cell: expected, observed, errno, verdict, flip."""
    props = [("cell", cell.id),
             ("expected", cell.expected.value if cell.expected is not None else "?"),
             ("observed", observation.outcome.value),
             ("summary", observation.summary())]
    if observation.errno_name or observation.errno is not None:
        props.append(("errno", _errno_text(observation.errno_name, observation.errno)))
    if observation.bind_errno_name or observation.bind_errno is not None:
        props.append(("bind_errno", _errno_text(observation.bind_errno_name, observation.bind_errno)))
    if observation.elapsed_ms is not None:
        props.append(("elapsed_ms", f"{observation.elapsed_ms:.1f}"))
    props.append(("verdict", judgement.kind))
    if judgement.mismatch:
        props.append(("mismatch", "true"))
    if baseline is not None:
        props.append(("baseline", baseline.outcome.value))
        if baseline.outcome_errno:
            props.append(("baseline_errno", baseline.outcome_errno))
        if judgement.flip:
            props.append(("flip", judgement.flip))
    return props


def attempt_properties(attempts: list[dict[str, Any]], judgement: Judgement) -> list[tuple[str, str]]:
    """A rerun cell's earlier attempts in JUnit, under Surefire's names: flakyFailure / flakyError when
    the cell agreed on a rerun (flaky), rerunFailure / rerunError when it never did."""
    agreed = judgement.kind in ("pass", "skip")
    return [(("flaky" if agreed else "rerun") + ("Error" if attempt.get("verdict") == "error" else "Failure"),
             f"attempt {number}: {attempt.get('message')}") for number, attempt in enumerate(attempts, 1)]


def write_summary(terminalreporter: Any, done: dict[str, Any], baseline_warning: str | None) -> None:
    """The hvsock-matrix section of pytest's terminal summary: the matrix and the files written."""
    from harness.report.terminal import render_terminal

    terminalreporter.write_sep("=", "hvsock-matrix")
    if baseline_warning:
        terminalreporter.write_line(baseline_warning, yellow=True)
    if "error" in done:
        terminalreporter.write_line(done["error"], red=True, bold=True)
    if "report" in done:
        for line in render_terminal(done["report"]).splitlines():
            terminalreporter.write_line(line, red=line.startswith("  * "), bold=line.startswith("  * "),
                                        yellow=line.startswith("  ! "))
    for problem in done.get("problems", []):
        terminalreporter.write_line(problem, red=True)
    for key in ("results", "html", "md", "history"):
        if key in done:
            terminalreporter.write_line(f"{key}: {done[key]}")


class PytestHtmlSummary:
    """pytest-html users get the matrix in their report (registered only when pytest-html is)."""

    def __init__(self, done: dict[str, Any]):
        self.done = done  # the run's written files; filled in at sessionfinish

    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list, session: Any) -> None:
        if "html" not in self.done:
            return
        path = Path(self.done["html"])
        try:
            page = path.read_text(encoding="utf-8")
        except OSError:
            return
        prefix.append(
            f'<p>hvsock-matrix: <a href="{_html.escape(path.as_uri())}">{_html.escape(str(path))}</a></p>'
            f'<iframe class="hvsock-matrix" title="hvsock-matrix connectivity matrix" '
            f'style="width:100%;height:70vh;border:1px solid #ccc" srcdoc="{_html.escape(page, quote=True)}"></iframe>')
