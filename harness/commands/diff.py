"""`hvsock-matrix diff A B`: what changed between two runs, flips first; exit 1 when any flipped.

A and B are results files, run folders, run ids, `last` or `previous`. B is judged against A,
exactly as `pytest --baseline A` judges a run, so the two agree cell for cell. --html / --md
also write the two runs side by side (harness/report/run_diff.py), the nodes' kernels on top.

--twins pairs cells across different nodes instead of by id (B's node -> A's node; `lab` is the
lab's hybrid -> kernel map l1-hybrid=l1,vm31=vm21,vm32=vm22): each differing twin is listed with
both outcomes and errnos. That is a comparison of two host models, not a judgement: exit 0.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from harness.matrix import build_report
from harness.report import cells as words
from harness.report.terminal import render_terminal
from harness.results import Run, check_output_path, load_run, resolve_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("before", metavar="A", help="baseline: results file, run id, last or previous")
    parser.add_argument("after", metavar="B", help="run to judge: results file, run id, last or previous")
    parser.add_argument("--results-dir", default="reports", help="where run ids are looked up (default: reports)")
    parser.add_argument("--no-matrix", action="store_true", help="print only the changes, not the matrices")
    parser.add_argument("--html", metavar="FILE", default=None,
                        help="write A and B side by side, differing cells first, as one HTML page")
    parser.add_argument("--md", metavar="FILE", default=None, help="the same side-by-side view as Markdown")
    parser.add_argument("--twins", metavar="MAP", default=None,
                        help="pair cells across nodes, B_NODE=A_NODE[,...] or `lab` (l1-hybrid=l1,vm31=vm21,"
                             "vm32=vm22): a hybrid vsock matrix next to the kernel host's, same bind/target tokens")


def run(args: argparse.Namespace) -> int:
    from harness.report.run_diff import parse_twins

    for out in (args.html, args.md):  # a folder or a device named as output fails before anything is read
        if out:
            check_output_path(Path(out))
    try:
        twins = parse_twins(args.twins) if args.twins is not None else None
    except ValueError as exc:
        print(f"hvsock-matrix diff: {exc}", file=sys.stderr)
        return 2
    before = load_run(resolve_run(args.before, args.results_dir))
    after = load_run(resolve_run(args.after, args.results_dir))
    if twins is not None:
        return _twins(before, after, twins, args)
    report = build_report(after, baseline=before)
    out = sys.stdout
    print(f"diff {before.run_id} -> {after.run_id}", file=out)
    if args.no_matrix:
        from harness.report.terminal import change_lines
        print("\n".join(change_lines(report)), file=out)
    else:
        print(render_terminal(report), file=out)
    before_ids = {c.id for c in before.cells}
    after_ids = {c.id for c in after.cells}
    new = [c for c in after.cells if c.id not in before_ids]
    gone = [c for c in before.cells if c.id not in after_ids]
    if new:
        print(f"\nOnly in {after.run_id}: {len(new)}", file=out)
        print("\n".join(f"  + {c.id}: {words.observed_line(c.observation)}" for c in new), file=out)
    if gone:
        print(f"\nOnly in {before.run_id}: {len(gone)}", file=out)
        print("\n".join(f"  - {c.id}: {words.observed_line(c.observation)}" for c in gone), file=out)
    if args.html or args.md:
        _write_side_by_side(before, after, args.html, args.md, out)
    return 1 if report.flips else 0


def _write_side_by_side(before: Run, after: Run, html: str | None, md: str | None, out: TextIO) -> None:
    from harness.report.run_diff import compare_runs

    diff = compare_runs(before, after)
    kernels = "; ".join(f"{node} {ka or '-'} -> {kb or '-'}" for node, ka, kb in diff.kernels() if ka != kb)
    print(f"\n{len(diff.differing)} of {len(diff.pairs)} cells differ (outcome or errno)"
          + (f"; kernels changed: {kernels}" if kernels else ""), file=out)
    if html:
        from harness.report.diff_html import write_diff_html
        print(f"wrote {write_diff_html(diff, Path(html))}", file=out)
    if md:
        from harness.report.diff_markdown import write_diff_markdown
        print(f"wrote {write_diff_markdown(diff, Path(md))}", file=out)


def _twins(before, after, twins: dict[str, str], args: argparse.Namespace) -> int:
    """B's cells next to their twins in A: differing pairs first, each with both outcomes and errnos."""
    from harness.report.run_diff import Side, compare_twins

    diff = compare_twins(before, after, twins)
    out = sys.stdout
    paired = [p for p in diff.pairs if p.a is not None]
    mapping = ", ".join(f"{b}={a}" for b, a in twins.items())
    print(f"twins {before.run_id} (A) ~ {after.run_id} (B), nodes {mapping}: {len(paired)} of {len(diff.pairs)} "
          f"cells of B have a twin in A; {len([p for p in paired if p.differs])} differ", file=out)

    def side(s: Side) -> str:
        return " ".join(x for x in (s.outcome or "-", s.errno, s.time) if x)

    for p in paired:
        if p.differs and p.a is not None and p.b is not None:
            sa, sb = p.sides
            print(f"  {p.a.id}: {side(sa)}  |  {p.b.id}: {side(sb)}  ({p.change})", file=out)
    alone = [p.b for p in diff.pairs if p.a is None and p.b is not None]
    if alone:
        print(f"\nNo twin in {before.run_id}: {len(alone)}", file=out)
        print("\n".join(f"  + {c.id}: {words.observed_line(c.observation)}" for c in alone), file=out)
    if args.html:
        from harness.report.diff_html import write_diff_html
        print(f"wrote {write_diff_html(diff, Path(args.html))}", file=out)
    if args.md:
        from harness.report.diff_markdown import write_diff_markdown
        print(f"wrote {write_diff_markdown(diff, Path(args.md))}", file=out)
    return 0
