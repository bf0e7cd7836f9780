"""Inventory files: which lab nodes exist, how they relate, how the controller reaches them.

Format (YAML; every error names "path:line"):

```yaml
inventory: hyperv-lab              # name of the lab (required; tells the file apart from a scenario)
description: free text             # optional
nodes:                             # a list; order is kept (selectors expand in this order)
  - name: hv-host                  # [A-Za-z0-9][A-Za-z0-9._-]*, unique; not a selector word
    role: host                     # host | vm
    os: windows                    # windows | linux
    family: hyperv                 # optional: windows -> hyperv, linux -> vsock; or tcp
    vm_id: null                    # Hyper-V VM ID (GUID, any case, braces allowed) of a VM
    cid: null                      # vsock CID of the node (3..4294967294; 2 = a host)
    address: null                  # IPv4, used by the tcp family (and parent targets in tcp)
    hybrid_uds: null               # a vm with a hybrid vsock device (Firecracker, Cloud Hypervisor,
                                   # vhost-device-vsock): its Unix socket on the host, the address of
                                   # the vm from a `family: hybrid` host node (absolute path)
    lab_node: false                # true: a lab machine where AF_VSOCK may be opened
    note: free text                # optional
    access:                        # how to reach it; default {kind: local}
      kind: psexec                 # local | ssh | psexec
      host: hv-host.lab.invalid    # ssh/psexec: hostname or IP (or an ~/.ssh/config alias)
      port: 445                    # 1..65535; default 22 (ssh) / 445 (psexec)
      user: Administrator
      password_env: HVSOCK_HV_PASSWORD   # NAME of an environment variable, never the password
      key_file: ~/.ssh/id_ed25519        # ssh private key path (ssh-agent is used too)
      jump: kvm-host               # ssh: another node of this inventory used as jump host
      known_hosts: ~/.ssh/known_hosts
      host_key_policy: reject      # reject (default) | accept-new | ignore
      use_ssh_config: true         # honour ~/.ssh/config
      connect_timeout: 30          # seconds
      python: python3              # interpreter on the node (default python3 / py -3)
      workdir: /tmp                # POSIX: each run copies the probe into a fresh `mktemp -d` (0700)
                                   # below this base, checked by sha256; only root/the user may write it
      netns: null                  # local only: run inside this network namespace
  - name: kvm-host-local0          # a network namespace of another node: a location of its own
    netns: local0                  # the namespace's name on that node (`ip netns list`)
    of: kvm-host                   # the node it lives on: role, os, family, cid, lab_node, parent
                                   # and access are that node's; every command runs under
                                   # `ip netns exec local0` there (Linux, access ssh or local)
    facts: {vsock_ns_mode: local}  # optional, merged over the node's own facts
  - name: win-vm
    role: vm
    parent: hv-host                # a vm names its host; the parent must exist and be a host
    os: windows
    vm_id: B50F20E6-CF19-1796-BA60-D9CFE2D8FE29
```

Rules: credentials only by reference — a `password:`, `secret:`, `token:` or `passphrase:` key
anywhere is rejected; a Windows node speaks hyperv or tcp, a Linux node vsock, hybrid (the host side
of hybrid vsock: AF_UNIX through each guest's `hybrid_uds`) or tcp;
`lab_node: true` on an `access: local` node is refused unless HVSOCK_MATRIX_LAB_NODE=1
(the controller itself must never open AF_VSOCK). Only a vm has a parent. A namespace node
(`of:`) writes only name, netns, of, facts and note; it cannot be the namespace of another
namespace node, and its node already runs in no namespace of its own.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictBool, StrictInt, ValidationError, field_validator

from harness import addresses, model_errors, timeouts, yamlfile
from harness.errors import InputError
from harness.node import NAME_RE, NAME_RULE, Access, Family, Inventory, Node, check_timeout, seconds, shown
from harness.secrets import credential_in_host, credential_in_user, register

RESERVED_NAMES = frozenset({"host", "vm", "linux-host", "windows-host", "linux-vm", "windows-vm",
                            "server", "self", "any"})
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
HOST_RE = re.compile(r"[A-Za-z0-9_.:%\[\]-]{1,253}")  # hostname, ssh alias, IPv4 or IPv6 literal
USER_RE = re.compile(r"[^\s:]{1,256}")  # tester, LAB\tester, tester@lab.local
LAB_NODE_ENV = "HVSOCK_MATRIX_LAB_NODE"  # the probe's own variable (harness/probe/common.py LAB_ENV): one name
MIN_VM_CID = 3  # 0, 1, 2 are the hypervisor, local and host CIDs; a VM's own CID is 3 or more
DEFAULT_FAMILY = {"windows": "hyperv", "linux": "vsock"}
FAMILIES_FOR_OS = {"windows": ("hyperv", "tcp"), "linux": ("vsock", "hybrid", "tcp")}
HYBRID_UDS_MAX = 96  # sun_path holds 107 bytes; the host listens on <uds>_<port> (up to 11 more)
RESERVED_CIDS = {addresses.VMADDR_CID_HYPERVISOR: "VMADDR_CID_HYPERVISOR",
                 addresses.VMADDR_CID_LOCAL: "VMADDR_CID_LOCAL",
                 addresses.VMADDR_CID_ANY: "VMADDR_CID_ANY"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccessModel(_Strict):
    kind: Literal["local", "ssh", "psexec"] = "local"
    host: str | None = None
    port: StrictInt | None = None
    user: str | None = None
    key_file: str | None = None
    password_env: str | None = None
    jump: str | None = None
    known_hosts: str | None = None
    host_key_policy: Literal["reject", "accept-new", "ignore"] = "reject"
    use_ssh_config: StrictBool = True
    connect_timeout: Annotated[float, BeforeValidator(seconds)] = timeouts.NODE_CONNECT_TIMEOUT
    python: str | None = None
    workdir: str | None = None
    netns: str | None = None

    @field_validator("port")
    @classmethod
    def _port(cls, v):
        problem = None if v is None else addresses.check_port(v, "tcp")
        if problem:
            raise ValueError(problem.removeprefix("tcp "))  # "port N out of range 1..65535": ssh and SMB are tcp
        return v

    @field_validator("password_env")
    @classmethod
    def _env(cls, v):
        if v is not None and not ENV_NAME_RE.fullmatch(v):
            raise ValueError("password_env must be the NAME of an environment variable (letters, digits, _)")
        return v

    # host and user values are never echoed: a mistake there may be a password
    @field_validator("host")
    @classmethod
    def _host(cls, v):
        if v is not None and credential_in_host(v):
            raise ValueError("host must not carry credentials (no 'user:password@' or 'user@' prefix); "
                             "use user: and password_env: NAME")
        if v is not None and not HOST_RE.fullmatch(v):
            raise ValueError("host must be a hostname, an ~/.ssh/config alias or an IP address "
                             "(letters, digits, . _ - : [ ]; at most 253 characters)")
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v):
        if v is not None and credential_in_user(v):
            raise ValueError("user must not carry a password (no ':', '%' or '/' in a user name: URLs, smbclient "
                             "and runas append one that way); use password_env: NAME")
        if v is not None and not USER_RE.fullmatch(v):
            raise ValueError("user must be a user name (no spaces; at most 256 characters)")
        return v

    @field_validator("connect_timeout")
    @classmethod
    def _timeout(cls, v):
        return check_timeout("connect_timeout", v)


NETNS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # what `ip netns add` accepts, minus path tricks
# what a namespace node (`of:`) takes from its node instead of writing it
INHERITED = ("role", "os", "family", "parent", "vm_id", "cid", "address", "lab_node", "access")


class NodeModel(_Strict):
    name: str
    role: Literal["host", "vm"] | None = None  # required, unless `of:` names the node it inherits from
    os: Literal["linux", "windows"] | None = None
    netns: str | None = None
    of: str | None = None
    family: Literal["hyperv", "vsock", "hybrid", "tcp"] | None = None
    parent: str | None = None
    vm_id: str | None = None
    cid: StrictInt | None = None
    address: str | None = None
    hybrid_uds: str | None = None
    lab_node: StrictBool = False
    note: str | None = None
    facts: dict[str, Any] = {}
    access: AccessModel = AccessModel()

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not NAME_RE.fullmatch(v):
            raise ValueError(f"bad node name {shown(v)} ({NAME_RULE})")
        if v.lower() in RESERVED_NAMES:
            raise ValueError(f"node name {v!r} is a reserved selector word "
                             f"({', '.join(sorted(RESERVED_NAMES))})")
        return v

    @field_validator("netns")
    @classmethod
    def _netns(cls, v):
        if v is not None and not NETNS_RE.fullmatch(v):
            raise ValueError(f"bad netns name {shown(v)} ({NAME_RULE})")
        return v

    @field_validator("vm_id")
    @classmethod
    def _vm_id(cls, v):
        return None if v is None else addresses.parse_guid(v)

    @field_validator("cid")
    @classmethod
    def _cid(cls, v):
        if v is None:
            return v
        if not addresses.CID_MIN <= v <= addresses.CID_MAX:
            raise ValueError(f"cid {v} out of range {addresses.CID_MIN}..{addresses.CID_MAX}")
        if v in RESERVED_CIDS:
            raise ValueError(f"cid {v} is {RESERVED_CIDS[v]} and cannot be a node's own CID")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v):
        if v is None:
            return v
        try:
            return str(ipaddress.IPv4Address(v))
        except ValueError:
            raise ValueError(f"address must be an IPv4 address, not {v!r}") from None


    @field_validator("hybrid_uds")
    @classmethod
    def _hybrid_uds(cls, v):
        if v is None:
            return v
        if not v.startswith("/") or "\0" in v or len(v.encode()) > HYBRID_UDS_MAX or any(c.isspace() for c in v):
            raise ValueError(f"hybrid_uds must be an absolute path of at most {HYBRID_UDS_MAX} bytes without "
                             f"spaces, not {shown(v)}")
        return v


class InventoryModel(_Strict):
    inventory: str
    description: str | None = None
    nodes: list[NodeModel]

    @field_validator("inventory")
    @classmethod
    def _name(cls, v):
        if not NAME_RE.fullmatch(v):
            raise ValueError(f"bad inventory name {shown(v)} ({NAME_RULE})")
        return v

    @field_validator("nodes")
    @classmethod
    def _nonempty(cls, v):
        if not v:
            raise ValueError("an inventory needs at least one node")
        return v


def _fields_for(loc: tuple) -> list[str]:
    if not loc:
        return model_errors.keys_of(InventoryModel)
    if loc[-1] == "access":
        return model_errors.keys_of(AccessModel)
    return model_errors.keys_of(NodeModel)


def parse_inventory(path: str, data: Any) -> Inventory:
    """Validate loaded YAML data into an Inventory; InputError("path:line: ...") on the first problem."""
    if not isinstance(data, dict):
        raise InputError(f"{path}:{getattr(data, 'line', 1)}", "an inventory file must be a mapping with 'inventory:' and 'nodes:'")
    yamlfile.reject_inline_secrets(path, data)
    try:
        model = InventoryModel.model_validate(data)
    except ValidationError as exc:
        raise model_errors.input_error_from_pydantic(path, data, exc, fields_for=_fields_for) from None

    def at(i: int, *loc: Any) -> str:
        return yamlfile.where(path, data, ("nodes", i, *loc))

    by_name: dict[str, tuple[int, NodeModel]] = {}
    for i, n in enumerate(model.nodes):
        if n.name in by_name:
            first = yamlfile.line_of(data, ("nodes", by_name[n.name][0]))
            raise InputError(at(i, "name"), f"duplicate node name {n.name!r} (first at line {first})")
        by_name[n.name] = (i, n)

    _check_unique_addresses(model, at)
    nodes: dict[str, Node] = {}
    namespaces: list[tuple[int, NodeModel]] = []
    for i, n in enumerate(model.nodes):
        if n.of is not None or n.netns is not None:
            namespaces.append((i, n))
            continue
        if n.role is None or n.os is None:
            key = "role" if n.role is None else "os"
            raise InputError(at(i), f"node {n.name}: {key}: is required "
                                    f"({'host | vm' if key == 'role' else 'linux | windows'})")
        role, os_name = n.role, n.os
        family = cast(Family, n.family or DEFAULT_FAMILY[os_name])  # both checked by the model
        if family not in FAMILIES_FOR_OS[os_name]:
            raise InputError(at(i, "family"), f"node {n.name}: family {family} does not exist on {os_name} "
                             f"(use {' or '.join(FAMILIES_FOR_OS[os_name])})")
        if n.role == "vm":
            if n.parent is None:
                raise InputError(at(i), f"node {n.name}: a vm needs parent: <name of its host node>")
        elif n.parent is not None:
            raise InputError(at(i, "parent"), f"node {n.name}: only a vm has a parent (role is host)")
        if n.parent is not None:
            if n.parent not in by_name:
                raise InputError(at(i, "parent"), f"node {n.name}: parent {n.parent!r} is not a node of this inventory")
            if by_name[n.parent][1].role != "host":
                raise InputError(at(i, "parent"), f"node {n.name}: parent {n.parent!r} is not a host (role vm)")
        a = n.access
        if a.password_env:  # whatever prints it later (a library's error text) is scrubbed
            register(os.environ.get(a.password_env))
        if a.kind in ("ssh", "psexec") and not a.host:
            raise InputError(at(i, "access"), f"node {n.name}: access kind {a.kind} needs host:")
        if a.jump is not None:
            if a.kind != "ssh":
                raise InputError(at(i, "access", "jump"), f"node {n.name}: jump is only for access kind ssh")
            if a.jump == n.name:
                raise InputError(at(i, "access", "jump"), f"node {n.name}: a node cannot be its own jump host")
            if a.jump not in by_name:
                raise InputError(at(i, "access", "jump"), f"node {n.name}: jump {a.jump!r} is not a node of this inventory")
            if by_name[a.jump][1].access.kind != "ssh":
                raise InputError(at(i, "access", "jump"), f"node {n.name}: jump host {a.jump!r} is not reached by ssh")
        if a.netns is not None and a.kind != "local":
            raise InputError(at(i, "access", "netns"), f"node {n.name}: netns is only for access kind local")
        if n.lab_node and a.kind == "local" and os.environ.get(LAB_NODE_ENV) != "1":
            raise InputError(at(i, "lab_node"),
                             f"node {n.name}: lab_node: true on an access: local node would let the probe open "
                             f"AF_VSOCK on this controller; refused unless {LAB_NODE_ENV}=1")
        nodes[n.name] = Node(
            name=n.name, role=role, os=os_name, family=family, parent=n.parent, vm_id=n.vm_id, cid=n.cid,
            address=n.address, hybrid_uds=n.hybrid_uds, lab_node=n.lab_node, facts=dict(n.facts), source=at(i),
            access=Access(**a.model_dump()),
        )
    for i, n in namespaces:
        nodes[n.name] = _namespace_node(n, nodes, by_name, lambda *loc, i=i: at(i, *loc))
    nodes = {n.name: nodes[n.name] for n in model.nodes}  # file order, as selectors expand
    _check_jump_cycles(path, data, nodes)
    return Inventory(name=model.inventory, path=path, nodes=nodes)


def _namespace_node(n: NodeModel, nodes: dict[str, Node], by_name: dict, at) -> Node:
    """`{name: l1-local0, netns: local0, of: l1}`: l1 as seen from inside its namespace local0.

    Everything but the name and the facts is l1's; the access gains netns, so every command a
    transport starts there runs under `ip netns exec local0` (harness/transports).
    """
    if n.of is None:
        raise InputError(at("netns"), f"node {n.name}: netns: needs of: <the node the namespace lives on>")
    if n.netns is None:
        raise InputError(at("of"), f"node {n.name}: of: {n.of} needs netns: <the namespace's name on {n.of}>")
    written = [k for k in INHERITED if k in n.model_fields_set]
    if written:
        raise InputError(at(written[0]), f"node {n.name}: {written[0]} is {n.of}'s (of: {n.of}); "
                                         f"a namespace node writes only name, netns, of, facts, note")
    if n.of not in by_name:
        raise InputError(at("of"), f"node {n.name}: of {n.of!r} is not a node of this inventory")
    base = nodes.get(n.of)
    if base is None or by_name[n.of][1].of is not None:
        raise InputError(at("of"), f"node {n.name}: of {n.of!r} is itself a namespace node; "
                                   f"name the node it lives on")
    if base.os != "linux" or base.access.kind not in ("ssh", "local"):
        raise InputError(at("of"), f"node {n.name}: network namespaces are Linux's: {n.of} is {base.os} "
                                   f"reached by {base.access.kind} (needs linux, access ssh or local)")
    if base.access.netns is not None:
        raise InputError(at("of"), f"node {n.name}: {n.of} already runs in netns {base.access.netns}; "
                                   f"of: names a node in its own namespace")
    return replace(base, name=n.name, access=replace(base.access, netns=n.netns), netns_of=n.of,
                   facts={**base.facts, **n.facts, "netns": n.netns, "netns_of": n.of}, source=at())


def _check_unique_addresses(model: InventoryModel, at) -> None:
    """VM CIDs are 3 or more and unique among one host's guests; VM IDs are unique in the lab."""
    cids: dict[tuple[str | None, int], str] = {}
    vm_ids: dict[str, str] = {}
    for i, n in enumerate(model.nodes):
        if n.cid is not None and n.role == "vm" and n.cid < MIN_VM_CID:
            raise InputError(at(i, "cid"), f"node {n.name}: a VM's cid is {MIN_VM_CID} or more, not {n.cid} "
                                           f"(0, 1 and 2 are the hypervisor, local and host CIDs)")
        if n.cid is not None and n.role == "vm":
            key = (n.parent, n.cid)
            if key in cids:
                raise InputError(at(i, "cid"), f"node {n.name}: cid {n.cid} is already {cids[key]}'s, "
                                               f"another guest of {n.parent}")
            cids[key] = n.name
        if n.vm_id is not None:
            if n.vm_id in vm_ids:
                raise InputError(at(i, "vm_id"), f"node {n.name}: vm_id {n.vm_id} is already {vm_ids[n.vm_id]}'s")
            vm_ids[n.vm_id] = n.name


def _check_jump_cycles(path: str, data: Any, nodes: dict[str, Node]) -> None:
    for start in nodes.values():
        seen = [start.name]
        cur = start
        while cur.access.jump is not None:
            cur = nodes[cur.access.jump]
            if cur.name in seen:
                raise InputError(start.source, f"node {start.name}: jump hosts form a loop ({' -> '.join([*seen, cur.name])})")
            seen.append(cur.name)


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate one inventory file."""
    path = str(path)
    data = yamlfile.load(path)
    if not isinstance(data, dict) or "inventory" not in data:
        line = getattr(data, "line", 1)
        raise InputError(f"{path}:{line}", "not an inventory file (no top-level 'inventory:' key)")
    return parse_inventory(path, data)
