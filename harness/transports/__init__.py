"""Transports: how the controller reaches a node (local subprocess, ssh, psexec).

`open_transport(node, inventory)` imports the implementation lazily by access kind, so a run
that only uses local nodes never imports paramiko or pypsexec, and caches one transport per
node per process: a jump host's connection is the same one its own cells use.
"""
from __future__ import annotations

import importlib
import threading

from harness.errors import NodeError
from harness.node import Inventory, Node

IMPLEMENTATIONS = {
    "local": ("harness.transports.local", "LocalTransport"),
    "ssh": ("harness.transports.ssh", "SSHTransport"),
    "psexec": ("harness.transports.psexec", "PsexecTransport"),
}

_cache: dict[tuple, object] = {}
_cache_lock = threading.RLock()


def transport_class(kind: str):
    try:
        module_name, class_name = IMPLEMENTATIONS[kind]
    except KeyError:
        raise ValueError(f"unknown access kind {kind!r} (expected local, ssh or psexec)") from None
    module = importlib.import_module(module_name)
    found = getattr(module, class_name, None)
    if found is None:  # tolerate another name: the one Transport subclass the module defines
        from harness.transports.base import Transport
        found = next((v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Transport)
                      and v is not Transport and v.__module__ == module.__name__), None)
    if found is None:
        raise ImportError(f"{module_name} defines no Transport class")
    return found


def open_transport(node: Node, inventory: Inventory | None = None):
    """The cached transport for `node` (a new one if the cached one was closed)."""
    key = (inventory.path if inventory is not None else None, node)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None and not getattr(found, "_closed", False):
            return found
        try:
            cls = transport_class(node.access.kind)
        except ImportError as exc:
            raise NodeError(node.name, f"transport {node.access.kind} unavailable: {exc}") from None
        if node.access.kind == "ssh":
            transport = cls(node, inventory, jump_opener=lambda jump: open_transport(jump, inventory))
        else:
            transport = cls(node, inventory)
        _cache[key] = transport
        return transport


def forget(transport) -> None:
    """Drop a transport from the cache (after close())."""
    with _cache_lock:
        for key, value in list(_cache.items()):
            if value is transport:
                del _cache[key]


def close_inventory(inventory: Inventory | None) -> None:
    """Close every cached transport of `inventory` (jump hosts included), tunnelled ones first."""
    path = inventory.path if inventory is not None else None
    with _cache_lock:
        found = [(k, v) for k, v in _cache.items() if k[0] == path]
        for k, _ in found:
            del _cache[k]
    found.sort(key=lambda kv: kv[0][1].access.jump is None)
    for _, transport in found:
        try:
            transport.close()
        except Exception:
            pass
