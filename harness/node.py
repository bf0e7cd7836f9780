"""A lab node as the rest of the harness sees it, after the inventory file was validated.

Plain frozen dataclasses: the inventory loader (harness/inventory.py) builds them, every
other module only reads them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from harness import timeouts

Role = Literal["host", "vm"]
OS = Literal["linux", "windows"]
Family = Literal["hyperv", "vsock", "hybrid", "tcp"]  # hybrid: the host side of hybrid vsock (AF_UNIX)
AccessKind = Literal["local", "ssh", "psexec"]
HostKeyPolicy = Literal["reject", "accept-new", "ignore"]

# Names of nodes, scenarios, labels, inventories: always matched with fullmatch (a `$` would
# accept a trailing newline), ASCII only, bounded length.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
NAME_RULE = "letters, digits, . _ - ; at most 63 characters, not starting with . _ -"
MAX_TIMEOUT_S = timeouts.MAX_TIMEOUT  # a day: longer is a typo, and would overflow thread/socket timeouts


def shown(value: object, limit: int = 60) -> str:
    """repr() of a value for an error message, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def seconds(value: object) -> float:
    """A number of seconds as written: an int or float, never true/false or text like '10'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number of seconds, not {shown(value)}")
    return float(value)


def check_timeout(what: str, value: float) -> float:
    """A timeout must be a finite number of seconds in (0, MAX_TIMEOUT_S]."""
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise ValueError(f"{what} must be a finite number of seconds in (0, {MAX_TIMEOUT_S:g}], not {value}")
    return value


@dataclass(frozen=True)
class Access:
    """How the controller reaches a node. Secrets are references, never values."""

    kind: AccessKind = "local"
    host: str | None = None  # hostname or IP (ssh, psexec)
    port: int | None = None  # 22 for ssh, 445 for psexec when None
    user: str | None = None
    key_file: str | None = None  # ssh private key path (~ expanded by the transport)
    password_env: str | None = None  # NAME of an environment variable holding a password
    jump: str | None = None  # name of another inventory node used as ssh jump host
    known_hosts: str | None = None  # path; default ~/.ssh/known_hosts
    host_key_policy: HostKeyPolicy = "reject"
    use_ssh_config: bool = True  # honour ~/.ssh/config (HostName, Port, User, IdentityFile, ProxyJump)
    connect_timeout: float = timeouts.NODE_CONNECT_TIMEOUT  # nested lab guests need ~300
    python: str | None = None  # interpreter on the node; default python3 / py -3
    workdir: str | None = None  # POSIX: base of each run's fresh mktemp -d (default /tmp); Windows: see transports/psexec/transport.py
    netns: str | None = None  # local only: run inside this network namespace (ip netns exec)


@dataclass(frozen=True)
class Node:
    name: str
    role: Role
    os: OS
    family: Family  # default: windows -> hyperv, linux -> vsock
    access: Access = field(default_factory=Access)
    parent: str | None = None  # name of the host node, for role == "vm"
    vm_id: str | None = None  # canonical lowercase GUID (Hyper-V VM ID)
    cid: int | None = None  # vsock CID of this node (guest-cid), if known
    address: str | None = None  # IP address for the tcp family
    hybrid_uds: str | None = None  # a hybrid vsock guest's Unix socket on its host (family hybrid's address)
    lab_node: bool = False  # True: a real lab node or a lab guest; AF_VSOCK allowed there
    facts: dict = field(default_factory=dict, compare=False, hash=False)
    source: str = ""  # "file:line" where the node was defined, for error messages
    netns_of: str | None = None  # a network namespace of this other node (inventory `of:`)

    @property
    def machine(self) -> str:
        """The node whose kernel this is: itself, or the node a namespace node lives on."""
        return self.netns_of or self.name


@dataclass(frozen=True)
class Inventory:
    name: str
    path: str
    nodes: dict[str, Node]

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def children(self, name: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.parent == name]
