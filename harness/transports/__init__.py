"""Transports: how the controller reaches a node (local subprocess, ssh, psexec).

`open_transport(node, inventory)` makes a new transport of the node's access kind from the typed
map TRANSPORTS (as testinfra's BACKENDS), importing its module only then: a run that only uses
local nodes never imports paramiko or pypsexec. Nothing is cached here: a run's transports live in
its AgentPool (harness/agents/pool.py), which also hands an SSH transport its jump hosts.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.errors import NodeError
from harness.node import Inventory, Node

if TYPE_CHECKING:
    from harness.transports.base import Transport

# access kind -> (module, class): the one list of transports
TRANSPORTS: dict[str, tuple[str, str]] = {
    "local": ("harness.transports.local", "LocalTransport"),
    "ssh": ("harness.transports.ssh", "SSHTransport"),
    "psexec": ("harness.transports.psexec", "PsexecTransport"),
}


def transport_class(kind: str) -> type[Transport]:
    try:
        module_name, class_name = TRANSPORTS[kind]
    except KeyError:
        raise ValueError(f"unknown access kind {kind!r} (expected {', '.join(TRANSPORTS)})") from None
    return getattr(importlib.import_module(module_name), class_name)


def open_transport(node: Node, inventory: Inventory | None = None,
                   jump_opener: Callable[[Node], Transport] | None = None) -> Transport:
    """A new transport for `node`; `jump_opener(node)` gives an SSH transport its jump host's."""
    try:
        cls = transport_class(node.access.kind)
    except ImportError as exc:
        raise NodeError(node.name, f"transport {node.access.kind} unavailable: {exc}") from None
    if node.access.kind == "ssh":
        return cls(node, inventory, jump_opener=jump_opener)  # type: ignore[call-arg]
    return cls(node, inventory)
