"""Cross-check on the lab: the documents' own tool (socat) and the probe must agree, cell by cell.

The same cells run once with Driver(kind="socat") and once with the probe; a different outcome
(or a different errno for an X) fails. Cells chosen to cover O, X and B in L1 and in the guests.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.cell import Cell, Driver
from harness.outcome import Outcome

pytestmark = pytest.mark.qemu
REPO = Path(__file__).resolve().parent.parent

# (server node, bind, client node, target): O in L1, C1, C2, loopback in a guest, a sibling X,
# a bind the kernel refuses
CELLS = [
    ("l1", "wildcard", "l1", "loopback"),
    ("vm21", "wildcard", "l1", "server"),
    ("l1", "wildcard", "vm21", "parent"),
    ("vm21", "wildcard", "vm21", "loopback"),
    ("vm22", "wildcard", "vm21", "server"),
    ("l1", "node:vm21", "l1", "server"),
]


@pytest.mark.parametrize("server_on,bind,client_on,target", CELLS,
                         ids=[f"{s}:{b}-from-{c}:{t}" for s, b, c, t in CELLS])
def test_socat_and_probe_agree(lab, server_on, bind, client_on, target):
    from harness.runner import run_cell

    inventory, pool = lab
    port = 31000 + 10 * CELLS.index((server_on, bind, client_on, target))
    probe_cell = Cell(scenario="XCHECK", server_on=server_on, bind=bind, client_on=client_on, target=target,
                      port=port, timeout=15.0)
    # a socat process start in a nested guest costs 10-50 s (lab-recipe.md): a wider budget
    socat_cell = dataclasses.replace(probe_cell, port=port + 1, driver=Driver(kind="socat"), timeout=90.0)
    by_probe = run_cell(probe_cell, inventory, pool)
    by_socat = run_cell(socat_cell, inventory, pool)
    for obs in (by_probe, by_socat):
        assert obs.outcome is not Outcome.E, obs.detail
    assert by_probe.outcome is by_socat.outcome, f"probe {by_probe.summary()} / socat {by_socat.summary()}"
    if by_probe.outcome is Outcome.X and by_probe.errno_name and by_socat.errno_name:
        assert by_probe.errno_name == by_socat.errno_name, f"probe {by_probe.summary()} / socat {by_socat.summary()}"
