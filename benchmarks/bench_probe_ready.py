"""How long until the probes of every lab node are ready: the old deployment vs the new, in one run.

(old) what transports/base.py did before issue 18: per node an SSH exec of `sh -c 'umask 077 && mkdir
      -p ... && exec mktemp -d ...'`, an SFTP session to put probe.py, an exec of `sha256sum`, then the
      probe session's exec (the pid-marker `sh -c` wrapper around it);
(new) what it does now: one SFTP session (exclusive mkdir of a random folder, put, read back, sha256
      compared on the controller) and one exec, the probe itself.
Each way opens fresh SSH connections (guests through their jump host) and starts every node at once,
as a run's warm-up does; the clock stops when the last node's probe said "ready". On a nested TCG
guest every exec costs seconds, so the difference is the execs saved. Printed: both times and the ratio.

Run on the lab, never in CI (`hvsock-matrix lab up` first; it uses the running lab's inventory):

    python3 benchmarks/bench_probe_ready.py [--rounds N]
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import timeouts
from harness.inventory import load_inventory
from harness.probe import bundle
from harness.probe.protocol import is_ready, parse_line
from harness.transports.ssh import SSHTransport

OLD_MAKE_RUN_DIR = 'umask 077 && mkdir -p -- "$1" && exec mktemp -d -- "$1/$2"'
OLD_SHA256 = ('sha256sum -- "$2" 2>/dev/null || exec "$1" -c '
              '"import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],\'rb\').read()).hexdigest())" "$2"')


def lab_inventory() -> Path:
    from harness.lab import lifecycle

    status = lifecycle.status()
    if not status.get("ready") or not status.get("inventory"):
        raise SystemExit("the lab is not up: hvsock-matrix lab up (with the same HVSOCK_MATRIX_CACHE)")
    return Path(status["inventory"])


def transports(inventory, names: list[str] | None) -> dict[str, SSHTransport]:
    """Fresh transports for the ssh nodes (all, or `names`); jumped nodes share their jump host's connection."""
    made: dict[str, SSHTransport] = {}

    def opener(node):
        if node.name not in made:
            made[node.name] = SSHTransport(node, inventory, jump_opener=opener)
        return made[node.name]
    for node in inventory.nodes.values():
        if node.access.kind == "ssh" and (not names or node.name in names):
            opener(node)
    return {n: t for n, t in made.items() if not names or n in names}


def await_ready(proc, node) -> None:
    line = proc.read_line(timeouts.session_first_line(node.access.connect_timeout))
    if not is_ready(parse_line(line)):
        raise RuntimeError(f"{node.name}: no ready line: {line!r} {proc.stderr_tail()}")


def old_way(t: SSHTransport) -> None:
    base = (t.node.access.workdir or "/tmp").rstrip("/")
    made = t.run(["sh", "-c", OLD_MAKE_RUN_DIR, "hvsock-matrix", base, "hvsock-matrix.XXXXXXXXXX"], timeout=120)
    folder = made.stdout.strip()
    remote = folder + "/probe.pyz"
    sftp = t.client().open_sftp()  # the old put opened its own SFTP session
    try:
        sftp.put(str(bundle.probe_file()), remote)
    finally:
        sftp.close()
    got = t.run(["sh", "-c", OLD_SHA256, "sha256", t.python(), remote], timeout=120).stdout.split()
    if not got or got[0] != bundle.probe_sha256():
        raise RuntimeError(f"{t.node.name}: copy does not match")
    proc = t.spawn([t.python(), remote, "session", "--idle-timeout", "60"] + (["--lab-node"] if t.node.lab_node else []))
    try:
        await_ready(proc, t.node)
    finally:
        proc.kill()
        t.run(["rm", "-rf", "--", folder], timeout=120)


def new_way(t: SSHTransport) -> None:
    proc = t.spawn(t.probe_command() + ["session", "--idle-timeout", "60"] + (["--lab-node"] if t.node.lab_node else []))
    try:
        await_ready(proc, t.node)
    finally:
        proc.kill()


def timed(way, inventory, names: list[str] | None) -> tuple[float, dict[str, float | str]]:
    ts = transports(inventory, names)
    per: dict[str, float | str] = {}
    t0 = time.monotonic()

    def one(name: str) -> None:
        try:
            way(ts[name])
            per[name] = round(time.monotonic() - t0, 1)
        except Exception as exc:  # a node that failed is named, the others still timed
            per[name] = f"failed after {time.monotonic() - t0:.0f}s: {str(exc)[:120]}"

    try:
        with ThreadPoolExecutor(len(ts)) as ex:
            list(ex.map(one, sorted(ts)))
        return round(time.monotonic() - t0, 1), per
    finally:
        for t in sorted(ts.values(), key=lambda t: t.node.access.jump is None):
            t.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--nodes", nargs="*", help="only these nodes (default: every ssh node of the lab)")
    args = parser.parse_args()
    inventory = load_inventory(lab_inventory())
    rows = []
    for r in range(args.rounds):
        for name, way in (("old", old_way), ("new", new_way)) if r % 2 == 0 else (("new", new_way), ("old", old_way)):
            total, per = timed(way, inventory, args.nodes)
            failed = [n for n, v in per.items() if isinstance(v, str)]
            rows.append((name, total))
            print(f"round {r + 1} {name}: {'all probes ready' if not failed else 'done'} in {total:.1f} s  " +
                  "  ".join(f"{n} {v:.1f}s" if not isinstance(v, str) else f"{n} {v}" for n, v in sorted(per.items())),
                  flush=True)
    old = sum(t for n, t in rows if n == "old") / args.rounds
    new = sum(t for n, t in rows if n == "new") / args.rounds
    print(f"old {old:.1f} s, new {new:.1f} s: new/old = {new / old:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
