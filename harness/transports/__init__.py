"""Transports: how the controller reaches a node (local subprocess, ssh, psexec).

`open_transport(node, inventory)` imports the implementation lazily by access kind (BACKENDS), so a run
that only uses local nodes never imports paramiko or pypsexec, and caches one transport per
node per process: a jump host's connection is the same one its own cells use.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.errors import NodeError
from harness.node import Inventory, Node

if TYPE_CHECKING:
    from harness.transports.base import Transport


def _local() -> type[Transport]:
    from harness.transports.local import LocalTransport
    return LocalTransport


def _ssh() -> type[Transport]:
    from harness.transports.ssh import SSHTransport
    return SSHTransport


def _psexec() -> type[Transport]:
    from harness.transports.psexec.transport import PsexecTransport
    return PsexecTransport


# access kind -> its Transport class, imported on first use (pytest-testinfra's BACKENDS, typed)
BACKENDS: dict[str, Callable[[], type[Transport]]] = {"local": _local, "ssh": _ssh, "psexec": _psexec}

_cache: dict[tuple, object] = {}
_cache_lock = threading.RLock()


def transport_class(kind: str) -> type[Transport]:
    try:
        load = BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown access kind {kind!r} (expected {', '.join(BACKENDS)})") from None
    return load()


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
