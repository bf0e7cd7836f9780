"""`hvsock-matrix report RESULTS [--html OUT] [--md OUT]`: render a results file again.

Useful after copying a results.json off a lab controller, or to get Markdown for a bug report.
Without --html/--md the matrix is printed as in the terminal summary of `pytest scenarios/`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.matrix import build_report
from harness.report import HISTORY_RUNS
from harness.results import check_output_path, load_history, load_run, resolve_run


def _count(text: str) -> int:
    """0..1000 earlier runs (the strip is one character per run)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of runs: {text[:40]!r}") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} runs: give 0..1000")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS", help="results.json, a run folder, a run id, last or previous")
    parser.add_argument("--html", metavar="OUT", help="write the self-contained HTML matrix here")
    parser.add_argument("--md", metavar="OUT", help="write the Markdown matrices here")
    parser.add_argument("--baseline", metavar="FILE|last|previous",
                        help="compare with this run instead of the baseline stored in RESULTS")
    parser.add_argument("--results-dir", default="reports",
                        help="where run ids and history are looked up (default: reports)")
    parser.add_argument("--history", type=_count, default=HISTORY_RUNS, metavar="N",
                        help=f"earlier runs in each cell's strip (default {HISTORY_RUNS})")


def _history_dir(results_path: Path, default: Path) -> Path:
    """reports/runs/<id>/results.json and reports/history/<id>.json both live under reports/."""
    for parent in results_path.resolve().parents:
        if (parent / "history").is_dir():
            return parent
    return default


def run(args: argparse.Namespace) -> int:
    for out in (args.html, args.md):  # a folder or a device named as output fails before anything is read
        if out:
            check_output_path(Path(out))
    path = resolve_run(args.results, args.results_dir)
    current = load_run(path)
    baseline = load_run(resolve_run(args.baseline, args.results_dir)) if args.baseline else None
    results_dir = _history_dir(path, Path(args.results_dir))
    history = load_history(results_dir, before=current.run_id, limit=args.history)
    report = build_report(current, baseline=baseline, history=history)
    if args.html:
        from harness.report.html import write_html
        print(f"html: {write_html(report, Path(args.html))}")
    if args.md:
        from harness.report.markdown import write_markdown
        print(f"md: {write_markdown(report, Path(args.md))}")
    if not args.html and not args.md:
        from harness.report.terminal import render_terminal
        print(render_terminal(report))
    return 0
