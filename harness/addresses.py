"""Addresses of the three families, and how a scenario token becomes one. Pure: no I/O.

Why one module: the documents' whole subject is which well-known address means what on
which side (HV_GUID_PARENT on Windows is VMADDR_CID_HOST 2 on Linux, ...). Keeping every
constant, the port <-> service-GUID template and the token resolution table together makes
that mapping one reviewable table (see docs/architecture.md, "Resolution per family").

Resolution never raises for a token that is merely meaningless in a family (vsock has no
CHILDREN): it returns a Resolution with `na_reason` set, and the cell becomes n/a. It raises
ValueError only for a token that is malformed everywhere (the scenario loader reports those
as file:line errors).
"""
from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.node import NAME_RE as _NODE_NAME

if TYPE_CHECKING:  # only for annotations: addresses.py must stay importable on its own
    from harness.node import Inventory, Node

# --- Hyper-V sockets (Windows, AF_HYPERV) -------------------------------------------------
AF_HYPERV = 34
SOCK_STREAM = 1
HV_PROTOCOL_RAW = 1
SOCKADDR_HV_SIZE = 36  # family u16, reserved u16, VmId GUID (16), ServiceId GUID (16)
HVSOCKET_CONNECT_TIMEOUT = 1  # optname at level HV_PROTOCOL_RAW; milliseconds as u32
HYPERV_RAW_SERVICE_FLAGS = 0x20026  # Winsock catalog "Hyper-V RAW" service flags

HV_GUID_ZERO = "00000000-0000-0000-0000-000000000000"
HV_GUID_WILDCARD = HV_GUID_ZERO  # same value as ZERO (Guid.Empty)
HV_GUID_BROADCAST = "ffffffff-ffff-ffff-ffff-ffffffffffff"
HV_GUID_CHILDREN = "90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd"
HV_GUID_LOOPBACK = "e0e16197-dd56-4a10-9195-5ee7a155a838"
HV_GUID_PARENT = "a42e7cda-d03f-480c-9cc2-a4de20abb878"
HV_GUID_SILOHOST = "36bd0c5c-7276-4223-88ba-7d03b654c568"

HV_GUIDS: dict[str, str] = {
    "HV_GUID_ZERO": HV_GUID_ZERO,
    "HV_GUID_WILDCARD": HV_GUID_WILDCARD,
    "HV_GUID_BROADCAST": HV_GUID_BROADCAST,
    "HV_GUID_CHILDREN": HV_GUID_CHILDREN,
    "HV_GUID_LOOPBACK": HV_GUID_LOOPBACK,
    "HV_GUID_PARENT": HV_GUID_PARENT,
    "HV_GUID_SILOHOST": HV_GUID_SILOHOST,
}

# Linux-compatible service GUID: Data1 = vsock port (Windows "VSockTemplate").
VSOCK_TEMPLATE_SUFFIX = "-facb-11e6-bd58-64006a7986d3"
VSOCK_TEMPLATE_GUID = "00000000" + VSOCK_TEMPLATE_SUFFIX
WINDOWS_ONLY_EXAMPLE_SERVICE_GUID = "9866c7bc-0c89-4cb0-9427-5b526d1ae83b"
GCS_REGISTRY_KEY = (
    r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\GuestCommunicationServices"
)
GUEST_VM_ID_REGISTRY_KEY = r"HKLM\SOFTWARE\Microsoft\Virtual Machine\Guest\Parameters"
GUEST_VM_ID_REGISTRY_VALUE = "VirtualMachineId"

# --- Linux vsock (AF_VSOCK) -----------------------------------------------------------------
AF_VSOCK = 40
SOCKADDR_VM_SIZE = 16
VMADDR_CID_ANY = 4294967295  # -1U
VMADDR_CID_HYPERVISOR = 0
VMADDR_CID_LOCAL = 1  # formerly VMADDR_CID_RESERVED; needs vsock_loopback
VMADDR_CID_RESERVED = VMADDR_CID_LOCAL
VMADDR_CID_HOST = 2
VMADDR_PORT_ANY = 4294967295
SO_VM_SOCKETS_CONNECT_TIMEOUT = 6  # optname at level AF_VSOCK; struct timeval
IOCTL_VM_SOCKETS_GET_LOCAL_CID = 0x7B9  # _IO(7, 0xb9) on /dev/vsock
DEV_VSOCK_MAJOR, DEV_VSOCK_MINOR = 10, 118

VMADDR_CIDS: dict[str, int] = {
    "VMADDR_CID_ANY": VMADDR_CID_ANY,
    "VMADDR_CID_HYPERVISOR": VMADDR_CID_HYPERVISOR,
    "VMADDR_CID_LOCAL": VMADDR_CID_LOCAL,
    "VMADDR_CID_HOST": VMADDR_CID_HOST,
}

CID_MIN, CID_MAX = 0, 4294967295

# --- ports ----------------------------------------------------------------------------------
PORT_RANGES: dict[str, tuple[int, int]] = {
    "vsock": (1, 4294967294),
    "hyperv": (1, 4294967294),
    "hybrid": (1, 4294967294),  # the guest's vsock port: CONNECT <port> / <uds>_<port>
    "tcp": (1, 65535),
}
FAMILIES = ("hyperv", "vsock", "hybrid", "tcp")

# --- GUIDs ----------------------------------------------------------------------------------
# The one owner of GUID text and the port <-> service GUID rule: every other module (scenario and
# inventory checks, Hyper-V registration, PowerShell output) asks here. Values are uuid.UUID; the
# shape is checked first because uuid.UUID also takes forms no file or PowerShell writes
# (32 bare hex digits, "urn:uuid:...", a single brace).
_GUID_SHAPE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TEMPLATE = uuid.UUID(VSOCK_TEMPLATE_GUID)
_DATA1_SHIFT = 96  # Data1 (time_low) is the top 32 bits of the 128-bit value
_BELOW_DATA1 = (1 << _DATA1_SHIFT) - 1


def guid(text: object) -> uuid.UUID:
    """`8-4-4-4-12` hex, any case, in braces or not (both or neither) -> uuid.UUID; ValueError otherwise."""
    if isinstance(text, uuid.UUID):
        return text
    core = text.strip() if isinstance(text, str) else ""
    if core.startswith("{") and core.endswith("}"):
        core = core[1:-1]
    if not _GUID_SHAPE.fullmatch(core):
        shown = repr(text) if len(repr(text)) <= 60 else repr(text)[:57] + "..."
        raise ValueError(f"not a GUID: {shown} (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return uuid.UUID(core)


def is_guid(text: object) -> bool:
    try:
        guid(text)
    except ValueError:
        return False
    return True


def parse_guid(text: object) -> str:
    """Any case, with or without braces -> canonical lowercase `8-4-4-4-12`. ValueError otherwise."""
    return str(guid(text))


def canonical_guid(text: object) -> str | None:
    """The canonical text of a GUID, or None when `text` is not one (PowerShell output, registry names)."""
    try:
        return str(guid(text))
    except ValueError:
        return None


def format_guid(text: str) -> str:
    """Canonical form of a GUID (lowercase, no braces)."""
    return parse_guid(text)


def guid_name(text: str) -> str | None:
    """The well-known name of a GUID, e.g. "HV_GUID_PARENT"; WILDCARD wins over ZERO."""
    canon = parse_guid(text)
    for name in ("HV_GUID_WILDCARD", "HV_GUID_LOOPBACK", "HV_GUID_PARENT", "HV_GUID_CHILDREN",
                 "HV_GUID_BROADCAST", "HV_GUID_SILOHOST"):
        if HV_GUIDS[name] == canon:
            return name
    return None


# --- vsock port <-> service GUID ------------------------------------------------------------
def service_guid_for(port: int, explicit: str | None = None) -> str:
    """Hyper-V service GUID for a vsock port: the template with the port as Data1.

    19000 -> 00004a38-facb-11e6-bd58-64006a7986d3. `explicit` (a cell's `service:`) wins.
    """
    if explicit is not None:
        return parse_guid(explicit)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFFFFFF:
        raise ValueError(f"port {port!r} does not fit the 32-bit Data1 of the service GUID template")
    return str(uuid.UUID(int=(port << _DATA1_SHIFT) | (_TEMPLATE.int & _BELOW_DATA1)))


def port_for_service_guid(text: str) -> int | None:
    """The vsock port of a template GUID; None for a GUID not of the template (or not a GUID)."""
    value = canonical_guid(text)
    if value is None:
        return None
    number = uuid.UUID(value).int
    if number & _BELOW_DATA1 != _TEMPLATE.int & _BELOW_DATA1:
        return None
    return number >> _DATA1_SHIFT


def port_range(family: str) -> tuple[int, int]:
    return PORT_RANGES[family]


def check_port(port: object, family: str | None = None) -> str | None:
    """None if `port` is valid for `family` (or for every non-tcp family when None), else why not."""
    if isinstance(port, bool) or not isinstance(port, int):
        return f"port must be an integer, not {port!r}"
    lo, hi = PORT_RANGES[family or "vsock"]
    if not lo <= port <= hi:
        what = f"{family} " if family else ""
        return f"{what}port {port} out of range {lo}..{hi}"
    return None


# --- tokens ---------------------------------------------------------------------------------
ALIASES = {"any": "wildcard", "local": "loopback", "host": "parent", "lo": "loopback",
           "child": "children"}
WELL_KNOWN_TOKENS = ("wildcard", "loopback", "parent", "children", "broadcast")
BIND_WORDS = (*WELL_KNOWN_TOKENS, "self")
TARGET_WORDS = (*WELL_KNOWN_TOKENS, "self", "server")
NODE_PREFIXES = ("node:", "vm:")  # vm:<name> is the design note's spelling; node: is canonical

# token -> family -> (constant name, address text) or None (= n/a in that family).
# tcp "parent" is the parent node's own address and is resolved from the inventory instead.
WELL_KNOWN: dict[str, dict[str, tuple[str, str] | None]] = {
    "wildcard": {"hyperv": ("HV_GUID_WILDCARD", HV_GUID_WILDCARD),
                 "vsock": ("VMADDR_CID_ANY", str(VMADDR_CID_ANY)),
                 "tcp": ("INADDR_ANY", "0.0.0.0")},
    "loopback": {"hyperv": ("HV_GUID_LOOPBACK", HV_GUID_LOOPBACK),
                 "vsock": ("VMADDR_CID_LOCAL", str(VMADDR_CID_LOCAL)),
                 "tcp": ("INADDR_LOOPBACK", "127.0.0.1")},
    "parent": {"hyperv": ("HV_GUID_PARENT", HV_GUID_PARENT),
               "vsock": ("VMADDR_CID_HOST", str(VMADDR_CID_HOST)),
               "tcp": None},
    "children": {"hyperv": ("HV_GUID_CHILDREN", HV_GUID_CHILDREN), "vsock": None, "tcp": None},
    "broadcast": {"hyperv": ("HV_GUID_BROADCAST", HV_GUID_BROADCAST), "vsock": None, "tcp": None},
}

NA_REASONS: dict[tuple[str, str], str] = {
    ("children", "vsock"): "vsock has no equivalent of HV_GUID_CHILDREN",
    ("broadcast", "vsock"): "vsock has no equivalent of HV_GUID_BROADCAST",
    ("children", "tcp"): "tcp has no equivalent of HV_GUID_CHILDREN",
    ("broadcast", "tcp"): "tcp has no equivalent of HV_GUID_BROADCAST",
}

# The equivalences document 000 states, as data: (vsock constant, Hyper-V constant, token).
EQUIVALENCES: tuple[tuple[str, str, str], ...] = (
    ("VMADDR_CID_ANY", "HV_GUID_WILDCARD", "wildcard"),
    ("VMADDR_CID_LOCAL", "HV_GUID_LOOPBACK", "loopback"),
    ("VMADDR_CID_HOST", "HV_GUID_PARENT", "parent"),
)




def _ascii_digits(token: str) -> bool:
    """'123' but not '٣' (str.isdigit accepts any script's digits)."""
    return token.isascii() and token.isdigit()


def _is_cid_literal(token: str) -> bool:
    return _ascii_digits(token) and CID_MIN <= int(token) <= CID_MAX


def _is_ipv4(token: str) -> bool:
    try:
        ipaddress.IPv4Address(token)
        return True
    except ValueError:
        return False


def normalize_token(token: object, kind: str = "target") -> str:
    """Canonical spelling of a bind (kind="bind") or target token; ValueError if malformed.

    Returns one of the words, `node:<name>`, a canonical GUID, a CID as decimal text, or an IPv4.
    """
    if isinstance(token, bool):
        raise ValueError(f"bad {kind} token {token!r}")
    if isinstance(token, int):
        token = str(token)
    if not isinstance(token, str) or not token.strip():
        raise ValueError(f"bad {kind} token {token!r}")
    text = token.strip()
    low = ALIASES.get(text.lower(), text.lower())
    words = BIND_WORDS if kind == "bind" else TARGET_WORDS
    if low in words:
        return low
    for prefix in NODE_PREFIXES:
        if low.startswith(prefix):
            name = text[len(prefix):]
            if not name:
                raise ValueError(f"{kind} token {text!r} names no node")
            if not _NODE_NAME.fullmatch(name):
                raise ValueError(f"{kind} token {text[:70]!r}: not a node name (letters, digits, . _ -; at most 63)")
            return "node:" + name
    if is_guid(text):
        return parse_guid(text)
    if _ascii_digits(text):
        if len(text) > 12 or not _is_cid_literal(text):
            raise ValueError(f"CID {text[:20]} out of range {CID_MIN}..{CID_MAX}")
        return str(int(text))
    if _is_ipv4(text):
        return text
    if text.startswith("-") and _ascii_digits(text[1:]):
        raise ValueError(f"CID {text[:20]} out of range {CID_MIN}..{CID_MAX}")
    allowed = ", ".join((*words, "node:<name>", "a GUID", "a CID", "an IPv4 address"))
    raise ValueError(f"unknown {kind} token {text[:70]!r} (expected {allowed})")


# --- resolution -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolution:
    """Where one side of a cell points: `addr` text for the probe, or why it has none."""

    token: str  # canonical token
    family: str
    addr: str | None = None  # CID integer text, canonical GUID, or IPv4
    na_reason: str | None = None
    display: str = ""  # e.g. "HV_GUID_PARENT a42e7cda-..." or "VMADDR_CID_HOST 2"

    @property
    def is_na(self) -> bool:
        return self.na_reason is not None


def _na(token: str, family: str, reason: str) -> Resolution:
    return Resolution(token=token, family=family, na_reason=reason, display=f"n/a: {reason}")


def _node_address(token: str, node: Node, family: str, what: str) -> Resolution:
    """A node's own identity in `family`: its VM ID, CID or IPv4 address."""
    field, label = {"hyperv": ("vm_id", "VM ID"), "vsock": ("cid", "CID"),
                    "tcp": ("address", "address")}[family]
    value = getattr(node, field)
    if value is None:
        return _na(token, family, f"node {node.name} has no {field} ({what} in family {family})")
    addr = parse_guid(value) if family == "hyperv" else str(value)
    return Resolution(token=token, family=family, addr=addr, display=f"{node.name} {label} {addr}")


def _literal(token: str, family: str) -> Resolution:
    if is_guid(token):
        if family != "hyperv":
            return _na(token, family, f"a GUID has no meaning as a {family} address")
        g = parse_guid(token)
        name = guid_name(g)
        return Resolution(token=g, family=family, addr=g, display=f"{name} {g}" if name else g)
    if _is_cid_literal(token):
        if family != "vsock":
            return _na(token, family, f"a CID has no meaning as a {family} address")
        name = next((n for n, v in VMADDR_CIDS.items() if v == int(token) and n != "VMADDR_CID_HYPERVISOR"), None)
        return Resolution(token=token, family=family, addr=token,
                          display=f"{name} {token}" if name else f"CID {token}")
    if _is_ipv4(token):
        if family != "tcp":
            return _na(token, family, f"an IPv4 address has no meaning as a {family} address")
        return Resolution(token=token, family=family, addr=token, display=token)
    raise ValueError(f"unknown token {token!r}")


def _lookup(name: str, inventory: Inventory | None) -> Node | None:
    if inventory is None:
        return None
    return inventory.nodes.get(name)


def _resolve(token: object, kind: str, me: Node, server: Node | None,
             inventory: Inventory | None) -> Resolution:
    family = me.family
    tok = normalize_token(token, kind)
    if family == "hybrid":  # the host side of hybrid vsock: the guests' Unix sockets
        from harness import hybrid_addresses

        addr, text = hybrid_addresses.resolve(tok, kind, me, server, inventory)
        return Resolution(token=tok, family=family, addr=addr, display=text) if addr else _na(tok, family, text)
    if tok in WELL_KNOWN:
        if family == "tcp" and tok == "parent":
            if kind == "bind":
                return _na(tok, family, "tcp cannot bind to the parent's address (parent is a target only)")
            parent = _lookup(me.parent, inventory) if me.parent else None
            if parent is None:
                return _na(tok, family, f"node {me.name} has no parent node in the inventory")
            res = _node_address(tok, parent, family, "parent")
            return res if res.is_na else Resolution(tok, family, res.addr, None, f"parent {res.display}")
        entry = WELL_KNOWN[tok][family]
        if entry is None:
            return _na(tok, family, NA_REASONS[(tok, family)])
        name, addr = entry
        return Resolution(token=tok, family=family, addr=addr, display=f"{name} {addr}")
    if tok == "self":
        return _node_address(tok, me, family, "self")
    if tok == "server":
        assert server is not None
        return _node_address(tok, server, family, "server")
    if tok.startswith("node:"):
        name = tok[len("node:"):]
        node = _lookup(name, inventory)
        if node is None:
            return _na(tok, family, f"the inventory has no node {name}")
        return _node_address(tok, node, family, tok)
    return _literal(tok, family)


def resolve_bind(token: object, server: Node, inventory: Inventory | None = None) -> Resolution:
    """The address the server binds, in the server node's own family."""
    return _resolve(token, "bind", server, None, inventory)


def resolve_target(token: object, client: Node, server: Node,
                   inventory: Inventory | None = None) -> Resolution:
    """The address the client connects to, in the client node's own family.

    hyperv and vsock interoperate (the service GUID template); tcp never mixes with them.
    """
    if (client.family == "tcp") != (server.family == "tcp"):
        tok = normalize_token(token, "target")
        return _na(tok, client.family,
                   f"tcp does not mix with vsock/hyperv (server {server.name} is {server.family}, "
                   f"client {client.name} is {client.family})")
    return _resolve(token, "target", client, server, inventory)
