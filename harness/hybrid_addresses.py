"""Tokens on a hybrid vsock host: where a `family: hybrid` node binds and connects (pure).

Hybrid vsock (Firecracker, Cloud Hypervisor, vhost-device-vsock): a guest's side is plain AF_VSOCK
(its tokens resolve as vsock), but the host's side is one Unix socket per guest, the guest's
`hybrid_uds` in the inventory. So on the host an "address" is a set of UDS paths:

| token on the hybrid host | bind (listen on <uds>_<port>)          | target (CONNECT <port> through <uds>) |
| --- | --- | --- |
| wildcard, parent, self   | every hybrid guest of the host           | n/a: the host has no vsock address    |
| node:<guest>, server     | that guest's UDS                         | that guest's UDS                      |
| a CID                    | the UDS of the host's guest with that CID | the same                             |
| loopback                 | n/a: no loopback on the host side        | n/a                                   |
| children, broadcast      | n/a, as in vsock                         | n/a                                   |

`parent`/`self` bind like `wildcard` because a guest's connect to VMADDR_CID_HOST (2) is what lands on
<uds>_<port>: the host side is CID 2 for every guest. The probe's side of this is
harness/probe/hybrid.py; several paths travel joined by ','.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from harness.node import Inventory, Node

FAMILY = "hybrid"


class Resolution(NamedTuple):
    """What harness/addresses.py turns into its Resolution (this module imports nothing of it)."""

    addr: str | None  # the UDS path(s), or None: n/a
    text: str  # the display, or why it is n/a


def _na(tok: str, family: str, reason: str) -> Resolution:
    return Resolution(None, reason)
NO_LOOPBACK = "a hybrid vsock host has no loopback: its side of vsock is one Unix socket per guest"
NO_CID = "a hybrid vsock host has no vsock address of its own to connect to (it reaches guests through their UDS)"


def _guests(me: Node, inventory: Inventory | None) -> list[Node]:
    if inventory is None:
        return []
    return [n for n in inventory.children(me.name) if n.hybrid_uds]


def _uds_of(tok: str, node: Node, what: str) -> Resolution:
    if not node.hybrid_uds:
        return _na(tok, FAMILY, f"node {node.name} has no hybrid_uds ({what}: a hybrid host reaches only "
                                f"hybrid guests)")
    return Resolution(node.hybrid_uds, f"{node.name} UDS {node.hybrid_uds}")


def _by_cid(tok: str, me: Node, inventory: Inventory | None) -> Resolution:
    for guest in _guests(me, inventory):
        if str(guest.cid) == tok:
            return _uds_of(tok, guest, f"CID {tok}")
    return _na(tok, FAMILY, f"{me.name} has no hybrid guest with CID {tok} (a hybrid host addresses a guest "
                            f"by its UDS)")


def resolve(tok: str, kind: str, me: Node, server: Node | None, inventory: Inventory | None) -> Resolution:
    """`tok` (canonical, see addresses.normalize_token) as the hybrid host `me` binds or targets it."""
    if tok == "loopback":
        return _na(tok, FAMILY, NO_LOOPBACK)
    if tok in ("children", "broadcast"):
        return _na(tok, FAMILY, f"vsock has no equivalent of HV_GUID_{tok.upper()}")
    if tok.startswith("node:"):
        name = tok[len("node:"):]
        node = inventory.nodes.get(name) if inventory is not None else None
        if node is None:
            return _na(tok, FAMILY, f"the inventory has no node {name}")
        return _uds_of(tok, node, tok)
    if tok.isascii() and tok.isdigit():
        return _by_cid(tok, me, inventory)
    if kind == "target":
        if tok == "server":
            assert server is not None
            return _uds_of(tok, server, "server")
        return _na(tok, FAMILY, NO_CID)
    if tok in ("wildcard", "parent", "self"):
        guests = _guests(me, inventory)
        if not guests:
            return _na(tok, FAMILY, f"{me.name} has no hybrid guests (no child node with hybrid_uds)")
        return Resolution(",".join(g.hybrid_uds or "" for g in guests), f"UDS of {', '.join(g.name for g in guests)}")
    return _na(tok, FAMILY, f"{tok!r} has no meaning on a hybrid vsock host (Unix sockets, one per guest)")
