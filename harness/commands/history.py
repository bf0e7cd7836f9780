"""`hvsock-matrix history [--last N] [--html F] [--md F]`: each cell run by run, and how it behaves.

Per cell: its outcome in each of the last N runs (flips marked, the runs' kernels in the column
heads), its agreement over the last 7 and N runs, and a pattern: stable, changed (a new steady
outcome since run X), flaky (flips back and forth) or infra (E). Rules: harness/report/history.py.
Runs a killed controller left (journal, marked incomplete) are read too unless --complete-only.
Exit 0; 1 when no run could be read.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.report.history import DEFAULT_LAST, RECENT, load_history


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--last", type=int, default=DEFAULT_LAST, metavar="N",
                        help=f"the last N runs of the history (default {DEFAULT_LAST})")
    parser.add_argument("--html", metavar="FILE", help="write the cells x runs page here (self-contained)")
    parser.add_argument("--md", metavar="FILE", help="write the same as Markdown here")
    parser.add_argument("--results-dir", default="reports", help="where the history is (default: reports)")
    parser.add_argument("--complete-only", action="store_true",
                        help="leave out runs that did not finish (a killed controller's journal)")


def run(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.report.history_render import pattern_text, strip, write_history_html, write_history_markdown

    if args.last < 1:
        raise HarnessError(f"--last: must be at least 1, not {args.last}")
    history = load_history(Path(args.results_dir), last=args.last, include_incomplete=not args.complete_only)
    for path, why in history.skipped:
        print(f"not read: {path}: {why}")
    if not history.runs:
        print(f"no runs in {Path(args.results_dir) / 'history'}")
        return 1
    first, last = history.runs[0].run_id, history.runs[-1].run_id
    counts = ", ".join(f"{n} {p}" for p, n in history.counts().items())
    print(f"{len(history.runs)} runs ({first} .. {last}), {len(history.cells)} cells: {counts}")
    for pattern in ("flaky", "changed", "infra"):
        for cell in history.of(pattern):
            print(f"  {pattern:7} {cell.id}: {pattern_text(cell)}; agree last {RECENT} "
                  f"{cell.agree_text('recent')}, all {cell.agree_text('all')}  {strip(cell)}")
    if args.html:
        print(f"html: {write_history_html(history, Path(args.html))}")
    if args.md:
        print(f"md: {write_history_markdown(history, Path(args.md))}")
    return 0
