"""Benchmark: `hvsock-matrix history` reads 1,000 runs of 300 cells in seconds.

Writes a synthetic history of real-shaped results files (tests/synthetic_history.py), then times,
on the same files in the same run: (a) loading them bare (`json.loads` of each file, nothing
else: the floor any reader pays) and (b) building the whole history (harness/report/history.py,
patterns and agreement of every cell), first when it parses every file and keeps its summary,
then as every later reading does, from the summaries. Prints the times and ratios; the HTML and
Markdown of the last 30 runs are timed too. Exit status 1 when a goal is missed.

    python3 benchmarks/bench_history.py [--runs 1000] [--cells 300]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.report.history import load_history
from harness.report.history_render import render_history_html, render_history_markdown
from tests.synthetic_history import write_history

GOAL_SECONDS = 10.0  # the whole history of 1,000 x 300
GOAL_RATIO = 0.5  # a later reading: at most half of what parsing the JSON files alone costs


def best_of(n: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--cells", type=int, default=300)
    p.add_argument("--repeat", type=int, default=2, help="best of N timings (default 2)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        results = Path(tmp) / "reports"
        t0 = time.perf_counter()
        planted = write_history(results, runs=args.runs, cells=args.cells)
        files = sorted((results / "history").glob("*.json"))
        size = sum(f.stat().st_size for f in files)
        print(f"wrote {len(files)} runs x {args.cells} cells ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")

        def bare():
            return [json.loads(f.read_bytes()) for f in files]

        bare_s, _ = best_of(args.repeat, bare)
        cold_s, _ = best_of(1, lambda: load_history(results, last=args.runs))  # parses, keeps summaries
        history_s, history = best_of(args.repeat, lambda: load_history(results, last=args.runs))
        wrong = {c.id: c.pattern for c in history.cells if planted.get(c.id) != c.pattern}
        ratio = history_s / bare_s
        print(f"bare json.loads of every file: {bare_s:.2f} s")
        print(f"history, first reading (parses every file, keeps its summary): {cold_s:.2f} s  "
              f"ratio {cold_s / bare_s:.2f}")
        print(f"history, every later reading (summaries; patterns, agreement): {history_s:.2f} s  ratio {ratio:.2f}  "
              f"({len(history.runs)} runs, {len(history.cells)} cells, {len(wrong)} misclassified)")
        recent = load_history(results, last=30)
        html_s, html = best_of(1, lambda: render_history_html(recent))
        md_s, _ = best_of(1, lambda: render_history_markdown(recent))
        print(f"last 30 runs: html {html_s * 1000:.0f} ms ({len(html) / 1e6:.1f} MB), md {md_s * 1000:.0f} ms")
        ok = history_s <= GOAL_SECONDS and ratio <= GOAL_RATIO and not wrong
        print(f"goals: <= {GOAL_SECONDS:g} s, ratio <= {GOAL_RATIO:g}, every planted cell right: "
              f"{'met' if ok else 'MISSED'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
