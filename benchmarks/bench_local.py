"""1,024 local TCP cells through pytest: cells in flight must not make a fast matrix slower.

The cells are O and X on this machine (a listener bound to 127.0.0.a, a client aimed at
127.0.0.b: O when a = b or the bind is the wildcard, else X ECONNREFUSED), through the resident local probe, so a cell costs ~3 ms including pytest's own
reporting. Measured in one run: `--cells-in-flight 1` (the baseline, cell after cell) and the
default, alternately, best of REPEAT each; printed: each time, per cell, and the ratio.
Goal: default / baseline <= 1.10 (concurrency costs nothing measurable when cells do not wait).

    python3 benchmarks/bench_local.py [--cells 1024] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.in_flight import DEFAULT_IN_FLIGHT

GOAL_RATIO = 1.10
SIDE = 32  # binds x targets: wildcard and 127.0.0.1-31 x 127.0.0.1-32 (all of 127/8 is this machine)
BINDS = ["wildcard"] + [f"127.0.0.{k}" for k in range(1, SIDE)]
TARGETS = [f"127.0.0.{k}" for k in range(1, SIDE + 1)]


def write_files(folder: Path, cells: int) -> tuple[Path, Path]:
    inventory = folder / "inventory.yaml"
    inventory.write_text("inventory: bench-local\nnodes:\n"
                         "  - {name: here, role: host, os: linux, family: tcp, address: 127.0.0.1, "
                         "access: {kind: local}}\n")
    (folder / "scenarios").mkdir()
    lines = ["scenario: LOCAL", "port_base: 23000", "timeout: 5", "cells:"]
    for i in range(cells):
        lines += [f"  - label: L{i}",
                  f"    server: {{on: here, bind: {BINDS[(i // SIDE) % SIDE]}}}",
                  f"    client: {{on: here, target: {TARGETS[i % SIDE]}}}"]
    scenario = folder / "scenarios" / "local.yaml"
    scenario.write_text("\n".join(lines) + "\n")
    return inventory, scenario


def run_pytest(folder: Path, inventory: Path, scenario: Path, n: int) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "pytest", str(scenario), "--inventory", str(inventory), "-p", "no:cacheprovider",
            "-q", "--no-header", "--rootdir", str(folder), "--results-dir",
            str(folder / "reports"), "--cells-in-flight", str(n)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - t0
    tail = [line for line in proc.stdout.splitlines() if " passed" in line or " failed" in line]
    if proc.returncode not in (0, 1) or not tail:
        raise SystemExit(f"pytest rc={proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took, (tail[-1] if tail else "?")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1024, help=f"at most {SIDE * SIDE}")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hvsock-bench-local-") as tmp:
        folder = Path(tmp)
        inventory, scenario = write_files(folder, args.cells)
        best = {1: float("inf"), DEFAULT_IN_FLIGHT: float("inf")}
        outcome = {}
        for _ in range(args.repeat):
            for n in best:  # alternate, so a busy machine weighs on both alike
                took, summary = run_pytest(folder, inventory, scenario, n)
                best[n], outcome[n] = min(best[n], took), summary
    base, conc = best[1], best[DEFAULT_IN_FLIGHT]
    print(f"{args.cells} local TCP cells through pytest (interpreter start included), best of {args.repeat}:")
    for n, took in best.items():
        print(f"  --cells-in-flight {n:<3} {took:7.2f} s  {took / args.cells * 1000:6.2f} ms/cell  ({outcome[n]})")
    ratio = conc / base
    print(f"  ratio default/1 = {ratio:.2f}  (goal <= {GOAL_RATIO:.2f}: {'PASS' if ratio <= GOAL_RATIO else 'FAIL'})")
    same = outcome[1].split(" in ")[0] == outcome[DEFAULT_IN_FLIGHT].split(" in ")[0]
    print(f"  same summary line: {'yes' if same else 'NO'}")
    return 0 if ratio <= GOAL_RATIO and same else 1


if __name__ == "__main__":
    raise SystemExit(main())
