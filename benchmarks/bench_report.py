"""Benchmark: a 10,000-cell report renders in under 2 s and stays under 5 MB.

Prints time and size of each output next to a baseline measured in the same run on the same
data: `json.dumps` of the run (what writing results.json costs anyway). If headless Chromium is
installed it also times loading the page (--dump-dom, which waits for the page's JS) against an
empty page. Exit status 1 when a goal is missed.

    python3 benchmarks/bench_report.py [--cells 10000] [--history 10]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cell import Cell
from harness.matrix import build_report
from harness.outcome import Observation, Outcome
from harness.report.html import render_html
from harness.report.markdown import render_markdown
from harness.report.terminal import render_terminal
from harness.results import CellResult, Run

GOAL_SECONDS = 2.0
GOAL_BYTES = 5 * 1024 * 1024
BINDS = ["wildcard", "loopback", "children", "parent", "self", "broadcast", "node:vm3", "21", "4294967295",
         "a42e7cda-d03f-480c-9cc2-a4de20abb878"]
TARGETS = ["loopback", "parent", "children", "broadcast", "self", "server", "node:vm1", "2", "1",
           "e0e16197-dd56-4a10-9195-5ee7a155a838"]


def observation(rng: random.Random, outcome: Outcome, port: int, server: str, client: str) -> Observation:
    """Shaped like the runner's: commands sent, resolved addresses, errno and times."""
    base = dict(commands=[f'{server}: {{"op":"listen","family":"vsock","addr":"4294967295","port":{port},"count":1,"timeout":30}}',
                          f'{client}: {{"op":"connect","family":"vsock","addr":"21","port":{port},"payload":"World!","timeout":10}}'],
                server_address=f"cid=4294967295 port={port}", client_address=f"cid=21 port={port}",
                started_at="2026-01-02T03:04:05Z", duration_ms=round(rng.uniform(30, 900), 1))
    if outcome is Outcome.O:
        return Observation(outcome, elapsed_ms=round(rng.uniform(0.5, 9), 2), reply="Hello: World!", **base)
    if outcome is Outcome.X:
        return Observation(outcome, errno_name="ECONNRESET", errno=104, elapsed_ms=round(rng.uniform(1, 6000), 1), **base)
    if outcome is Outcome.B:
        return Observation(outcome, bind_errno_name="EADDRNOTAVAIL", bind_errno=99, **base)
    if outcome is Outcome.E:
        return Observation(outcome, detail="ssh channel closed before the listener answered", **base)
    return Observation(outcome, detail="vsock has no equivalent of HV_GUID_CHILDREN")


def make_run(run_id: str, cells: int, seed: int, like: Run | None = None, changed: float = 0.03) -> Run:
    """A run of `cells` cells; with `like`, the same cells where a fraction `changed` differs."""
    rng = random.Random(seed)
    if like is not None:
        results = []
        for r in like.cells:
            if rng.random() < changed:
                obs = observation(rng, rng.choice(list(Outcome)), r.port, r.server_on, r.client_on)
                r = dataclasses.replace(r, observation=obs, judgement=None)
            results.append(r)
        return Run(run_id, dict(like.meta), results)
    outcomes = [Outcome.O] * 6 + [Outcome.X] * 3 + [Outcome.B, Outcome.E, Outcome.NA]
    results, per_scenario = [], 2500
    for i in range(cells):
        scenario, j = divmod(i, per_scenario)
        row, col = divmod(j, 50)
        server, client = f"node{row // 10}", f"node{col // 10}"
        cell = Cell(scenario="ABCDEFGH"[scenario % 8], server_on=server, bind=BINDS[row % 10],
                    client_on=client, target=TARGETS[col % 10], port=20000 + i,
                    expected=rng.choice([Outcome.O, Outcome.X, None]), label=f"U{i}",
                    source="generated for the benchmark")
        results.append(CellResult.from_cell(cell, observation(rng, rng.choice(outcomes), 20000 + i, server, client)))
    return Run(run_id, {"started": "2026-01-02T03:04:05Z", "harness_version": "bench"}, results)


def timed(fn, *args, repeat: int = 3):
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, value


def chromium_load(page: str) -> tuple[float, float] | None:
    exe = shutil.which("chromium")
    if not exe:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        full, empty = Path(tmp) / "full.html", Path(tmp) / "empty.html"
        full.write_text(page, encoding="utf-8")
        empty.write_text("<!DOCTYPE html><title>empty</title><p>x", encoding="utf-8")
        times = []
        for target in (empty, full):
            argv = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp}/profile", "--dump-dom", target.as_uri()]
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, timeout=300, check=True)
            times.append(time.perf_counter() - start)
        return times[0], times[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=10)
    args = parser.parse_args()

    run = make_run("20260120T000000Z-bench0", args.cells, seed=0)
    # earlier nights: the same cells, each night ~3% of them different
    history = [make_run(f"202601{d + 10}T000000Z-bench{d}", args.cells, seed=d + 1, like=run)
               for d in range(args.history)]
    baseline = history[-1] if history else None

    t_json, blob = timed(lambda: json.dumps(run.to_dict()))
    t_build, report = timed(build_report, run, baseline, history)
    t_html, page = timed(render_html, report)
    t_md, md = timed(render_markdown, report)
    t_term, term = timed(render_terminal, report)
    html_bytes, json_bytes = len(page.encode()), len(blob.encode())
    total = t_build + t_html

    print(f"cells: {args.cells}, history runs: {args.history}, flips vs baseline: {len(report.flips)}")
    print(f"baseline json.dumps(run):   {t_json * 1000:8.1f} ms  {json_bytes / 1e6:6.2f} MB")
    print(f"build_report (matrices):    {t_build * 1000:8.1f} ms")
    print(f"render_html:                {t_html * 1000:8.1f} ms  {html_bytes / 1e6:6.2f} MB")
    print(f"  html build+render / json: {total / t_json:8.1f} x time  {html_bytes / json_bytes:6.2f} x size")
    print(f"render_markdown:            {t_md * 1000:8.1f} ms  {len(md.encode()) / 1e6:6.2f} MB")
    print(f"render_terminal:            {t_term * 1000:8.1f} ms  {len(term.encode()) / 1e6:6.2f} MB")
    loaded = chromium_load(page)
    if loaded:
        empty, full = loaded
        print(f"chromium --dump-dom: empty page {empty:.2f} s, report {full:.2f} s "
              f"(report costs {full - empty:.2f} s over an empty page)")
    ok_time, ok_size = total < GOAL_SECONDS, html_bytes < GOAL_BYTES
    print(f"goal: render < {GOAL_SECONDS:.0f} s: {'PASS' if ok_time else 'FAIL'} ({total:.2f} s); "
          f"size < 5 MB: {'PASS' if ok_size else 'FAIL'} ({html_bytes / 1024 / 1024:.2f} MiB)")
    return 0 if ok_time and ok_size else 1


if __name__ == "__main__":
    sys.exit(main())
