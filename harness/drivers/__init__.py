"""Drivers: how a cell's server and client are realised on their nodes.

`probe` (default) talks to the resident probe agents; `socat` runs socat as the documents did;
`command` runs user templates (e.g. the documents' ConsoleApp1.exe). Each driver turns one
CellPlan (a cell with its nodes and resolved addresses) into an Observation.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from harness.addresses import Resolution
from harness.cell import Cell
from harness.node import Node

DRIVERS = {
    "probe": "harness.drivers.probe",
    "socat": "harness.drivers.socat",
    "command": "harness.drivers.command",
}
REPLY_PREFIX = "Hello: "


@dataclass(frozen=True)
class CellPlan:
    """Everything a driver needs: the cell, both nodes, both resolved addresses, the service GUID."""

    cell: Cell
    server: Node
    client: Node
    bind: Resolution
    target: Resolution
    service: str  # Hyper-V service GUID of the cell's port (used by hyperv sides)

    @property
    def expected_reply(self) -> str:
        return REPLY_PREFIX + self.cell.payload

    def service_for(self, node: Node) -> str | None:
        return self.service if node.family == "hyperv" else None


def get_driver(kind: str):
    """The driver module for `kind`; each has run(plan, pool) -> Observation."""
    try:
        return importlib.import_module(DRIVERS[kind])
    except KeyError:
        raise ValueError(f"unknown driver {kind!r} (expected probe, socat or command)") from None
