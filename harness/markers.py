"""The markers every cell carries, so `-m` selects by family, driver and scenario, and
`--dist loadgroup` keeps one server node's cells on one xdist worker.

    hyperv / vsock / hybrid / tcp   a family one of the cell's two nodes speaks (B1 has hyperv and vsock)
    probe / socat / command  the cell's driver:  pytest scenarios/ -m "not socat"
    scenario(name=...)       the cell's scenario: pytest scenarios/ -m "scenario(name='A')"
    xdist_group(name=<server node>)   pytest-xdist's own marker (--dist loadgroup)

Registered in pytest_configure (addinivalue_line), so --strict-markers accepts them.
"""
from __future__ import annotations

from functools import cache

import pytest

from harness.cell import Cell
from harness.node import Inventory

FAMILIES = ("hyperv", "vsock", "hybrid", "tcp")
DRIVERS = ("probe", "socat", "command")
LINES = [f"{name}: hvsock-matrix cells with a {name} side" for name in FAMILIES] + \
        [f"{name}: hvsock-matrix cells run by the {name} driver" for name in DRIVERS] + \
        ["scenario(name): hvsock-matrix cells of scenario NAME, e.g. -m \"scenario(name='A')\""]
XDIST_GROUP_LINE = "xdist_group(name): tests with the same group name run in the same xdist worker"


def register(config: pytest.Config) -> None:
    for line in LINES:
        config.addinivalue_line("markers", line)
    if not any(str(line).startswith("xdist_group") for line in config.getini("markers")):
        config.addinivalue_line("markers", XDIST_GROUP_LINE)  # pytest-xdist registers it when installed


@cache
def _named(kind: str, name: str) -> pytest.MarkDecorator:
    return getattr(pytest.mark, kind)(name=name) if kind in ("scenario", "xdist_group") else getattr(pytest.mark, name)


def cell_markers(cell: Cell, inventory: Inventory | None) -> list[pytest.MarkDecorator]:
    nodes = inventory.nodes if inventory is not None else {}
    families = sorted({nodes[name].family for name in (cell.server_on, cell.client_on) if name in nodes})
    return ([_named("family", f) for f in families]
            + [_named("driver", cell.driver.kind), _named("scenario", cell.scenario),
               _named("xdist_group", cell.server_on)])
