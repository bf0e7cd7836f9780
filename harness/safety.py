"""The one gate every cell passes where it is planned: no AF_VSOCK on a node that is not a lab node.

Why here and not in each driver: the controller's own /dev/vsock belongs to the infrastructure
(DEVELOPERS.md), and a driver added tomorrow must not be able to forget the rule. Checked for
every driver before any transport is opened:
  probe    a vsock side opens AF_VSOCK;
  socat    a vsock side runs socat VSOCK-LISTEN / VSOCK-CONNECT;
  command  a vsock side, or a template that names VSOCK in any spelling a tool accepts
           (socat's VSOCK-LISTEN:/VSOCK-CONNECT:/VSOCK:, `--family vsock`, ncat's `--vsock`,
           AF_VSOCK, vsock://),
           whatever the node's family says.
A lab node is one the inventory marks `lab_node: true` (harness/inventory.py refuses that
mark on the controller itself unless HVSOCK_MATRIX_LAB_NODE=1).
"""
from __future__ import annotations

import re

from harness.drivers import CellPlan
from harness.node import Node

# socat address types (VSOCK-LISTEN, VSOCK-CONNECT, VSOCK-L, VSOCK), --family/-f vsock, ncat --vsock,
# AF_VSOCK / PF_VSOCK, vsock:// URLs, /dev/vsock, Python's socket.AF_VSOCK
VSOCK_IN_TEMPLATE = re.compile(
    r"(?i)(?:\bvsock(?:-[a-z]+)*:|--?(?:f|family)[= ]+['\"]?vsock\b|--vsock\b|\b[ap]f_vsock\b|\bvsock://|/dev/vsock)")


def template_opens_vsock(template: str | None) -> bool:
    return template is not None and VSOCK_IN_TEMPLATE.search(template) is not None


def _side_opens_vsock(plan: CellPlan, side: str, node: Node) -> str | None:
    """What on this side would open AF_VSOCK, or None."""
    kind = plan.cell.driver.kind
    if kind == "command":
        template = plan.cell.driver.server if side == "server" else plan.cell.driver.client
        if template_opens_vsock(template):
            return f"command template VSOCK ({side})"
        return f"command driver on {node.family} node ({side})" if node.family in ("vsock", "hybrid") else None
    if node.family == "hybrid":  # a vhost-user backend's UDS: lab nodes only, like AF_VSOCK
        return f"{kind} hybrid vsock UDS ({side})"
    if node.family != "vsock":
        return None
    return "socat VSOCK" if kind == "socat" else f"{kind} AF_VSOCK ({side})"


def vsock_refusal(plan: CellPlan) -> str | None:
    """Why this cell must not run (one line), or None when no side opens AF_VSOCK off a lab node."""
    for side, node in (("server", plan.server), ("client", plan.client)):
        if node.lab_node:
            continue
        what = _side_opens_vsock(plan, side, node)
        if what:
            return f"refused: {what} on {node.name}, which is not a lab node (lab_node: false)"
    return None
