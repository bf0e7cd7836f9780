"""`--cells-in-flight N`: the pytest side of harness/scheduler.py.

The run's items (after -k / -m deselection, in collection order) are handed to a CellScheduler
once the session is set up (lab, probes, registration); each CellItem then takes its cell's
Observation from it instead of running the cell itself, so pytest reports item by item, in
order, with the same verdicts. N = 1 runs nothing ahead: the cell runs in the item, as before.

An xdist worker runs its cells one after another: it is handed them one at a time, so it
cannot know which cells are its own ahead of time; `-n` spreads the nodes, this spreads the
waiting inside one process.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from harness.cell import Cell
from harness.outcome import Observation
from harness.scheduler import CellScheduler, Limits

# Measured on the lab-in-a-box (benchmarks/bench_lab.py, scenarios/linux-kvm.yaml): see the
# README's "Cells in flight". The per-node limit keeps a nested guest's probe from being flooded;
# process starts (socat, command) cost a nested guest 10-50 s of CPU each, hence their own limit.
DEFAULT_IN_FLIGHT = 8
PER_NODE = 4
SPAWNING = 2


def add_option(group: pytest.OptionGroup) -> None:
    group.addoption("--cells-in-flight", type=int, default=None, metavar="N",
                    help=f"run up to N cells at once, ahead of pytest's item loop (default {DEFAULT_IN_FLIGHT}; "
                         "1: one after another). Cells sharing a port never overlap.")


def limits_for(config: pytest.Config) -> Limits | None:
    """The run's limits, or None when cells run one after another (N = 1, an xdist worker)."""
    n = config.getoption("cells_in_flight", None)
    if n is None:
        n = DEFAULT_IN_FLIGHT
    if n < 1:
        raise pytest.UsageError(f"--cells-in-flight: must be at least 1, not {n}")
    if n == 1 or getattr(config, "workerinput", None) is not None:
        return None
    return Limits(in_flight=n, per_node=min(n, PER_NODE), spawning=min(n, SPAWNING))


def runnable(items: Sequence[pytest.Item]) -> list[tuple[str, Cell]]:
    """(nodeid, cell) of every item that will run a cell: skipped cells never reach a node."""
    out = []
    for item in items:
        cell = getattr(item, "cell", None)
        if isinstance(cell, Cell) and not cell.skip_reason:
            out.append((item.nodeid, cell))
    return out


def start(config: pytest.Config, items: Sequence[pytest.Item],
          run: Callable[[Cell], Observation]) -> CellScheduler | None:
    limits = limits_for(config)
    cells = runnable(items)
    if limits is None or len(cells) < 2:
        return None
    return CellScheduler(cells, run, limits, name="hvsock-cell").start()
