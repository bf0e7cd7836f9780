"""Cells in flight over real SSH, without qemu: the network-namespace lab (tests/netns_lab.py).

Three hosts with their own sshd (one reached through a jump host); every bind x target x
placement, where one target is an address nobody has in the lab's subnet, so those cells wait
for the kernel to give up (EHOSTUNREACH after ARP's ~3 s): the waiting that dominates a real
matrix (a vsock ETIMEDOUT, a Hyper-V connect timeout). Measured in one run: the same scenario
with `--cells-in-flight 1` and with the default (or --in-flight N); printed: each time, the
ratio, and whether every cell's outcome and errno name agree. Needs root; not run in CI.

    python3 benchmarks/bench_netns.py [--in-flight N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.in_flight import DEFAULT_IN_FLIGHT
from tests.netns_lab import NetnsLab, skip_reason


def scenario(unreachable: str) -> str:
    return ("scenario: WAIT\nport_base: 35000\ntimeout: 10\npairs: any\naxes:\n"
            "  server.on: [nsa, nsb, nsc]\n  server.bind: [wildcard, loopback, self]\n"
            f"  client.on: [nsa, nsb, nsc]\n  client.target: [server, loopback, {unreachable}]\n")


def run(folder: Path, inventory: str, n: int) -> tuple[float, dict, str]:
    reports = folder / f"reports-{n}"
    argv = [sys.executable, "-m", "pytest", "scenarios/wait.yaml", "--inventory", inventory, "-p", "no:cacheprovider",
            "-q", "--rootdir", str(folder), "--results-dir", str(reports), "--cells-in-flight", str(n)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=folder, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=1800)
    took = time.monotonic() - t0
    runs = sorted((reports / "runs").glob("*/results.json"))
    if not runs:
        raise SystemExit(f"no results (rc={proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    cells = json.loads(runs[-1].read_text())["cells"]
    lines = [line for line in proc.stdout.splitlines() if " in " in line and "passed" in line]
    return took, {c["id"]: (c["observation"]["outcome"], c["observation"]["errno_name"]) for c in cells}, \
        (lines[-1].strip("= ") if lines else f"rc={proc.returncode}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--in-flight", type=int, default=DEFAULT_IN_FLIGHT)
    args = ap.parse_args()
    reason = skip_reason()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory(prefix="hvsock-bench-netns-") as tmp:
        folder = Path(tmp)
        lab = NetnsLab.create(str(folder / "lab"))
        try:
            (folder / "scenarios").mkdir()
            (folder / "scenarios" / "wait.yaml").write_text(scenario(f"{lab.subnet}.99"))
            t1, one, s1 = run(folder, lab.inventory_path, 1)
            tn, many, sn = run(folder, lab.inventory_path, args.in_flight)
        finally:
            lab.down()
    print(f"{len(one)} netns cells over SSH (one host behind a jump host), pytest start and warm-up included:")
    print(f"  --cells-in-flight 1   {t1:7.1f} s   ({s1})")
    print(f"  --cells-in-flight {args.in_flight:<3} {tn:7.1f} s   ({sn})")
    print(f"  ratio = {tn / t1:.2f}")
    differ = sorted(cid for cid in set(one) | set(many) if one.get(cid) != many.get(cid))
    print("  same outcome and errno name in every cell: " + ("yes" if not differ else f"NO: {differ}"))
    return 0 if not differ else 1


if __name__ == "__main__":
    raise SystemExit(main())
