"""The unit of work a driver takes: one cell with its nodes and resolved addresses."""
from __future__ import annotations

from dataclasses import dataclass

from harness.addresses import Resolution
from harness.cell import Cell
from harness.node import Node

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
