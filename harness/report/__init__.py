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
    history_page, flaky = write_cell_history(run, Path(results_dir), folder)
    paths = {"history": history_page}
    nightly = {"link": history_page.name, "runs": NIGHTLY_HISTORY_RUNS, "flaky": flaky}
    paths.update({"html": write_html(report, folder / "matrix.html", nightly=nightly),
                  "md": write_markdown(report, folder / "matrix.md")})
    return report, paths


NIGHTLY_HISTORY_RUNS = 30  # the history page written next to each run's matrix


def write_cell_history(run, results_dir: Path, folder: Path) -> tuple[Path, list[tuple[str, str]]]:
    """history.html next to the run's matrix: the last runs up to this one (harness/report/history.py),
    and the flaky cells (id, why) for the matrix to list on top."""
    from harness.report import history as cell_history
    from harness.report.history_render import pattern_text, write_history_html
    from harness.results import history_dir

    summary = cell_history.summary_from_run(run)
    stored = history_dir(results_dir) / f"{run.run_id}.json"
    if stored.is_file():
        cell_history.keep_summary(stored, summary)  # the next history reading skips parsing this run
    found = cell_history.load_history(results_dir, last=NIGHTLY_HISTORY_RUNS, extra=[summary])
    flaky = [(c.id, pattern_text(c)) for c in found.of("flaky")]
    return write_history_html(found, folder / "history.html", matrix_link="matrix.html"), flaky
