"""Reports of a run: HTML (html.py), Markdown (markdown.py), terminal (terminal.py).

`write_run_reports` is the one call that turns a finished results file into the files a user
opens: matrix.html and matrix.md next to results.json in reports/runs/<run-id>/.
"""
from __future__ import annotations

from pathlib import Path

HISTORY_RUNS = 10  # how many earlier runs the per-cell strip shows


def write_run_reports(run, results_dir: Path | str, baseline=None,
                      history_runs: int = HISTORY_RUNS, folder: Path | None = None):
    """Build the matrices of `run` (a harness.results.Run) and write matrix.html + matrix.md.

    Returns (MatrixReport, {"html": path, "md": path}). History comes from
    `<results_dir>/history`, runs older than this one.
    """
    from harness.matrix import build_report
    from harness.report.html import write_html
    from harness.report.markdown import write_markdown
    from harness.results import load_history, run_dir

    history = load_history(Path(results_dir), before=run.run_id, limit=history_runs)
    report = build_report(run, baseline=baseline, history=history)
    folder = Path(folder) if folder else run_dir(Path(results_dir), run.run_id)
    paths = {"html": write_html(report, folder / "matrix.html"),
             "md": write_markdown(report, folder / "matrix.md")}
    return report, paths
