"""The same lab cells three ways, in one run: what cells in flight buy on a real (nested) lab.

(a) naive: what the documents did by hand, scripted -- per cell a fresh OpenSSH connection to the
    server node starting `socat VSOCK-LISTEN` (awaited on its "listening on" line), another to the
    client node running `socat VSOCK-CONNECT`, then the server is stopped;
(b) the harness, `--cells-in-flight 1` (cell after cell through the resident probes);
(c) the harness, the default `--cells-in-flight` (or --in-flight N).
Printed: each time, per cell, the ratios, and whether (b) and (c) agree on every cell's outcome
and errno name. (b) and (c) include pytest's start and the probes' warm-up, as a user pays them.

Like with like: killing the local ssh does not reach a socat server in a nested guest through its
jump host, so a "stopped" naive server stayed listening and (b) and (c) then read B EADDRINUSE on
the sibling and own-CID cells. The naive loop therefore stops each server by its pid on its node
(the remote shell prints `$$` and execs the server), and before timing (b) and (c) the bench reads
every node's process table: no process of the naive loop may remain (any left is killed by its pid
and named; one that survives that stops the bench).

Run on the lab, never in CI (`hvsock-matrix lab up` first; it uses the running lab's inventory):

    python3 benchmarks/bench_lab.py                                  # the documented KVM cells
    python3 benchmarks/bench_lab.py --all --naive 0                  # the full linux-kvm.yaml, (b) vs (c)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.drivers import socat
from harness.drivers.errnos import find_errno
from harness.in_flight import DEFAULT_IN_FLIGHT
from harness.inventory import load_inventory
from harness.node import Inventory, Node
from harness.runner import plan_cell
from harness.scenario import load_cells

SCENARIO = ROOT / "scenarios" / "linux-kvm.yaml"


def lab_inventory() -> Path:
    from harness.lab import lifecycle

    status = lifecycle.status()
    if not status.get("ready") or not status.get("inventory"):
        raise SystemExit("the lab is not up: hvsock-matrix lab up (with the same HVSOCK_MATRIX_CACHE)")
    return Path(status["inventory"])


def ssh_argv(node: Node, inventory: Inventory) -> list[str]:
    """OpenSSH to the node as a user would type it (guests through their jump host)."""
    a = node.access
    opts = ["-i", os.path.expanduser(a.key_file), "-o", f"UserKnownHostsFile={os.path.expanduser(a.known_hosts)}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={math.ceil(a.connect_timeout)}",
            "-F", "/dev/null"]
    if a.jump:
        jump = ssh_argv(inventory.node(a.jump), inventory)
        opts += ["-o", "ProxyCommand=" + shlex.join([*jump[:-1], "-W", "%h:%p", jump[-1]])]
    return ["ssh", *opts, "-p", str(a.port), f"{a.user}@{a.host}"]


PID_LINE = "naive-pid "


def remote(node: Node, inventory: Inventory, command: str) -> subprocess.CompletedProcess:
    """One command on the node; bounded by the node's own connect time (a nested guest's SSH under TCG
    can take minutes) plus two minutes for the command."""
    budget = node.access.connect_timeout * (2 if node.access.jump else 1) + 120.0
    try:
        return subprocess.run([*ssh_argv(node, inventory), command], capture_output=True, text=True, timeout=budget,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{node.name}: no answer over SSH in {budget:.0f} s; the lab is too slow to check it") from None


def naive_cell(cell, inventory: Inventory, started: dict[str, dict[int, str]]) -> tuple[str, str | None, float]:
    """One cell by hand: (outcome, errno name, seconds). `started` collects {node: {pid: listen address}}."""
    t0 = time.monotonic()
    plan = plan_cell(cell, inventory)
    if not hasattr(plan, "server"):
        return plan.outcome.value, None, time.monotonic() - t0
    wait = float(cell.timeout) + 120.0
    # bounded on the node whatever happens here; -tt: killing ssh hangs the server up at once
    listen = socat.listen_address(plan.server.family, plan.bind.addr, cell.port)
    # the remote shell says its pid, then becomes the server: that pid is what stops it on the node
    s_cmd = (f"echo {PID_LINE}$$; exec timeout {wait + 60:g} "
             + shlex.join(socat.server_argv(plan.server.family, plan.bind.addr, cell.port, wait)))
    c_cmd = shlex.join(socat.client_argv(plan.client.family, plan.target.addr, cell.port, float(cell.timeout), wait))
    s_ssh = ssh_argv(plan.server, inventory)
    server = subprocess.Popen([*s_ssh[:1], "-tt", *s_ssh[1:], s_cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    pid = None
    try:
        seen = []
        for line in server.stdout:  # its pid, then the server says when it listens (or why it cannot)
            if line.startswith(PID_LINE) and pid is None:
                pid = int(line[len(PID_LINE):].strip())
                started.setdefault(plan.server.name, {})[pid] = listen
                continue
            seen.append(line)
            if socat.READY in line:
                break
        else:
            found = find_errno("".join(seen))
            return ("B" if found else "E"), (found[0] if found else None), time.monotonic() - t0
        client = subprocess.run([*ssh_argv(plan.client, inventory), c_cmd], input=cell.payload,
                                capture_output=True, text=True, timeout=wait + 600)
    finally:
        if pid is not None:  # on the node itself: the local ssh's death does not cross the jump host
            remote(plan.server, inventory, f"kill -TERM {pid} 2>/dev/null; true")
        server.kill()
        server.wait(30)
    took = time.monotonic() - t0
    if client.returncode == 0 and client.stdout == plan.expected_reply:
        return "O", None, took
    found = find_errno(client.stderr + client.stdout)
    return ("X" if found else "E"), (found[0] if found else None), took


LEFTOVERS = r"""
import os, sys
pids, listens = {int(p) for p in sys.argv[1].split(",") if p}, [a for a in sys.argv[2:] if a]
mine = {os.getpid(), os.getppid()}  # this scan and the shell that runs it name the addresses too
for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) in mine:
        continue
    try:
        with open("/proc/%s/cmdline" % entry, "rb") as f:
            args = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        continue
    words = args.split()
    if int(entry) in pids or ("socat" in words and any(a in words for a in listens)):
        print(entry, args)
"""


def naive_leftovers(inventory: Inventory, started: dict[str, dict[int, str]]) -> dict[str, list[str]]:
    """{node: ["pid args", ...]}: the naive loop's servers still alive, by pid or by their exact listen address."""
    found: dict[str, list[str]] = {}
    for name, servers in started.items():
        node = inventory.node(name)
        python = node.access.python or "python3"
        pids = ",".join(str(p) for p in servers)
        proc = remote(node, inventory, shlex.join([python, "-c", LEFTOVERS, pids, *sorted(set(servers.values()))]))
        if proc.returncode != 0:
            raise SystemExit(f"cannot read {name}'s processes: {proc.stderr.strip()[-300:]}")
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        if lines:
            found[name] = lines
    return found


def check_naive_stopped(inventory: Inventory, started: dict[str, dict[int, str]]) -> None:
    """Before (b) and (c): no process of the naive loop on any node (left ones killed by pid, once)."""
    left = naive_leftovers(inventory, started)
    for name, lines in left.items():
        print(f"  naive loop left on {name}: {'; '.join(lines)}: killing by pid", flush=True)
        pids = " ".join(line.split()[0] for line in lines)
        remote(inventory.node(name), inventory, f"kill -KILL {pids} 2>/dev/null; true")
    if left:
        time.sleep(1)
        still = naive_leftovers(inventory, started)
        if still:
            raise SystemExit(f"the naive loop's processes survive on {sorted(still)}: {still}; not timing (b) and (c)")
    count = sum(len(s) for s in started.values())
    print(f"naive loop: {count} servers started, none left on {sorted(started) or 'any node'}", flush=True)


def cells_span(cells: list[dict]) -> float:
    """Seconds from the first cell's start to the last cell's end (the run without start-up and warm-up)."""
    spans = []
    for c in cells:
        o = c["observation"]
        if o.get("started_at") and o.get("duration_ms") is not None:
            start = datetime.fromisoformat(o["started_at"]).timestamp()
            spans.append((start, start + o["duration_ms"] / 1000))
    return (max(e for _, e in spans) - min(s for s, _ in spans)) if spans else 0.0


def harness_run(inventory: Path, keyword: str | None, n: int, folder: Path) -> tuple[float, float, dict, str]:
    """One pytest run: (seconds, seconds of cells, {cell id: (outcome, errno name)}, pytest's summary line)."""
    reports = folder / f"reports-{n}"
    argv = [sys.executable, "-m", "pytest", str(SCENARIO), "--inventory", str(inventory), "-p", "no:cacheprovider",
            "-q", "--results-dir", str(reports), "--cells-in-flight", str(n), "--rootdir", str(ROOT)]
    if keyword:
        argv += ["-k", keyword]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    took = time.monotonic() - t0
    runs = sorted((reports / "runs").glob("*/results.json"))
    if not runs:
        raise SystemExit(f"pytest wrote no results (rc={proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    cells = json.loads(runs[-1].read_text())["cells"]
    summary = [line for line in proc.stdout.splitlines() if " in " in line and ("passed" in line or "failed" in line)]
    return took, cells_span(cells), {c["id"]: (c["observation"]["outcome"], c["observation"]["errno_name"]) for c in cells}, \
        (summary[-1].strip("= ") if summary else f"rc={proc.returncode}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="every cell of linux-kvm.yaml (default: its labelled cells)")
    ap.add_argument("--naive", type=int, default=None, metavar="K",
                    help="run the naive loop on the first K selected cells only (0: skip it)")
    ap.add_argument("--in-flight", type=int, default=DEFAULT_IN_FLIGHT, help="(c)'s --cells-in-flight")
    ap.add_argument("-k", dest="select", default=None, help="a pytest -k expression narrowing the cells (e.g. 'not seqpacket')")
    args = ap.parse_args()
    inventory_path = lab_inventory()
    inventory = load_inventory(str(inventory_path))
    cells = [c for c in load_cells(SCENARIO, inventory) if not c.skip_reason]
    if not args.all:
        cells = [c for c in cells if c.label and c.label.startswith("KVM-")]
    keyword = None if args.all else " or ".join(f"{c.label}[" for c in cells)
    if args.select:
        keyword = args.select if keyword is None else f"({keyword}) and ({args.select})"
    rows = []
    stream = [c for c in cells if getattr(c, "socket", "stream") == "stream"]  # socat speaks stream only
    naive_cells = stream if args.naive is None else stream[:args.naive]
    with tempfile.TemporaryDirectory(prefix="hvsock-bench-lab-") as tmp:
        if naive_cells:
            t0, naive, started = time.monotonic(), {}, {}
            for c in naive_cells:
                naive[c.id] = naive_cell(c, inventory, started)
                print(f"  naive {c.id}: {naive[c.id][0]} {naive[c.id][1] or ''} {naive[c.id][2]:.1f} s", flush=True)
            rows.append(("(a) naive OpenSSH + socat loop", len(naive_cells), time.monotonic() - t0))
            check_naive_stopped(inventory, started)  # like with like: (b) and (c) start on clean nodes
        t_one, span_one, one, sum_one = harness_run(inventory_path, keyword, 1, Path(tmp))
        rows.append(("(b) harness, --cells-in-flight 1", len(one), t_one))
        t_many, span_many, many, sum_many = harness_run(inventory_path, keyword, args.in_flight, Path(tmp))
        rows.append((f"(c) harness, --cells-in-flight {args.in_flight}", len(many), t_many))
    print(f"\n{'run':<36} {'cells':>5} {'time':>9} {'per cell':>9}")
    for name, count, took in rows:
        print(f"{name:<36} {count:>5} {took:>8.1f}s {took / max(count, 1):>8.2f}s")
    per_cell = {name: took / max(count, 1) for name, count, took in rows}
    b, c = rows[-2][0], rows[-1][0]
    if naive_cells:
        print(f"per cell, naive / (b) = {per_cell[rows[0][0]] / per_cell[b]:.1f}x, "
              f"naive / (c) = {per_cell[rows[0][0]] / per_cell[c]:.1f}x")
    print(f"(c) / (b) = {t_many / t_one:.2f}  (done when <= 0.50 on the full matrix)")
    print(f"cells only (first start to last end, no pytest start-up or probe warm-up): (b) {span_one:.1f} s, "
          f"(c) {span_many:.1f} s, (c) / (b) = {span_many / max(span_one, 1e-9):.2f}")
    differ = sorted(cid for cid in set(one) | set(many) if one.get(cid) != many.get(cid))
    print(f"(b): {sum_one}\n(c): {sum_many}")
    print("same outcome and errno name in every cell: " + ("yes" if not differ else f"NO: {differ}"))
    if naive_cells:
        both = [cid for cid in naive if cid in one]  # -k may leave some naive cells out of (b)
        against = sorted(cid for cid in both if one[cid][0] != naive[cid][0])
        print(f"naive agrees with the harness on outcome ({len(both)} cells in both): "
              + ("yes" if not against else f"no: {against}"))
    return 0 if not differ else 1


if __name__ == "__main__":
    raise SystemExit(main())
