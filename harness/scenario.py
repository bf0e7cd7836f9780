"""Scenario files: which cells a matrix has and what the documents expect of each.

A scenario is written once and runs against any inventory: locations are selectors or node
names, addresses are tokens resolved per family at run time (harness/addresses.py).

Format (YAML; every error names "path:line"):

```yaml
scenario: A                  # name, [A-Za-z0-9][A-Za-z0-9._-]*; cell ids start with it (or a label)
title: Windows host and Windows VM, AF_HYPERV        # optional
source: "seeds/001_d14bb74e35920e23.txt"             # optional, where the expectations come from
description: free text       # optional
port: 19000                  # every cell uses it ...
# port_base: 20000           # ... OR cell number i (0-based, in the order below) uses port_base + i,
                             #     so parallel (xdist) cells never share a listener. Not both.
driver: probe                # probe (default) | socat | {kind: command, server: "...", client: "..."}
payload: World!              # what the client sends; O means "Hello: <payload>" came back
timeout: 10                  # seconds for the client's whole attempt
pairs: related               # related (default): keep a (server node, client node) pair only when
                             # same node, parent/child or siblings; any: keep every pair
max_cells: 20000             # optional: the most cells this scenario may expand to (default 20000,
                             # at most 1000000); a scenario over it is refused, never half-run
axes:                        # optional: cartesian product, every cell expect unknown
  server.on: [windows-host, windows-vm]
  server.bind: [wildcard, loopback, children, parent]
  client.on: [windows-host, windows-vm]
  client.target: [parent, loopback, server, children, broadcast]
  socket: [stream, seqpacket] # optional: every cell above once per socket type
cells:                       # optional: explicit cells (at least one of axes / cells)
  - label: A1                # optional, [A-Za-z0-9][A-Za-z0-9._-]*; the id starts with it
    server: {on: windows-host, bind: wildcard}
    client: {on: windows-vm, target: parent}
    expect: O                # O | X | B | n/a | unknown (default unknown); X and B may name the errno:
                             # "X ECONNRESET", "B EADDRNOTAVAIL", "X WSAECONNREFUSED"
    socket: seqpacket        # optional: stream (default) | seqpacket | dgram (also top level and axes)
    source: "001 case 1"     # where this expectation is written
    disputed: false          # true: the documents can be read two ways; see note
    note: free text
    port: 22                 # optional per-cell overrides: port, service, payload, timeout, driver
    service: 00004a38-facb-11e6-bd58-64006a7986d3   # explicit Hyper-V service GUID
```

Locations (`server.on`, `client.on`): a node name; a selector `host`, `vm`, `linux-host`,
`windows-host`, `linux-vm`, `windows-vm` (every matching node, inventory order); a selector
restricted by its parent, `SELECTOR@PARENT` (e.g. `linux-vm@windows-host`: Linux VMs whose
host is a Windows host; PARENT is a selector or a node name); and for `client.on` only,
`server` = the same node as the server. When nothing in the inventory matches, the cell
is still produced, with the token as node name and a `skip_reason` (pytest skips it).

Bind tokens: wildcard|any, loopback|local, children, parent|host, broadcast, self,
node:<name>, a GUID, a CID (integer), an IPv4 address. Target tokens: the same plus
`server` (the server node's VM ID / CID / address). Tokens are stored canonically
(aliases folded, GUIDs lowercase), so `any` and `wildcard` give the same cell id.

An explicit cell that the axes also produce (same server node, bind, client node, target,
driver kind) replaces that axes cell: its label, expectation and source win, no duplicate.
Cell order: explicit cells in file order, then the remaining axes cells in product order
(server.on, server.bind, client.on, client.target).

Socket types: `stream` (the documents' SOCK_STREAM), `seqpacket` (two messages out, two echoes
back, each whole), `dgram` (one datagram out, its echo back). A type a node refuses is B (server
side) or X (client side) with its errno and phase. Ids show the type when it is not stream:
`KVM[l1:any<-vm21:server/seqpacket]`. socat is a stream driver: a non-stream socat cell is n/a.

Drivers: `probe` runs harness/probe.py on both nodes; `socat` runs socat as the documents
did; `command` runs the templates, with placeholders {bind} {target} {addr} {port} {service}
{payload} {vm_id} {cid} {timeout} {socket} filled from the resolved cell (harness/drivers/command.py has the
details). The server template runs in the background on the server node, the client template
on the client node, and the client decides: O when it exits 0 (and, if it sends {payload},
"Hello: <payload>" is in its output), X when it exits non-zero with a recognisable connect
errno, E otherwise. Document 000's "ssh over vsock" (C3) is written this way: the guest runs
the documents' relay `socat VSOCK-LISTEN:{port},reuseaddr,fork TCP:localhost:22`, the host
connects over vsock and must read the SSH server's banner (`SSH-`) through it.

How a command client should end: as soon as it has its answer, never at a timeout. A shell
pipeline ends when its LAST process does, and a reader like `grep -q` exiting early does not
stop the program feeding it while the peer stays silent (sshd waits for the client's banner):
bound what the client reads instead (socat `readbytes=N`, `head -c N`, a request/response tool
that exits after the reply). `{timeout}` (e.g. socat `-T {timeout}`) is the bound for a peer
that never answers, not the expected duration: a client that waits for it turns every cell
into `timeout` seconds and makes an O look like a slow O.
"""
from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from harness import addresses, timeouts, yamlfile
from harness.cell import SOCKET_TYPES, TEMPLATE_FIELDS, Cell, Driver
from harness.drivers.command_ready import check_ready_pattern
from harness.drivers.errnos import known_errno
from harness.errors import InputError
from harness.node import NAME_RE, NAME_RULE, Inventory, Node, check_timeout, seconds, shown
from harness.outcome import Outcome

SELECTORS = ("host", "vm", "linux-host", "windows-host", "linux-vm", "windows-vm")
DEFAULT_MAX_CELLS = 20_000  # raise with `max_cells: N` in the scenario (up to HARD_MAX_CELLS)
HARD_MAX_CELLS = 1_000_000
MAX_AXIS_VALUES = 4096
EXPECT_WORDS = {"o": "O", "x": "X", "b": "B", "n/a": "n/a", "na": "n/a", "unknown": None}
DEFAULT_PAYLOAD = "World!"
DEFAULT_TIMEOUT = timeouts.CELL_TIMEOUT


# --- token checks (used as pydantic validators; ValueError messages become "path:line: ...") ---
def _check_location_part(text: str, whole: str) -> None:
    if text in SELECTORS:
        return
    if text.lower() in SELECTORS or text.lower() in ("server", "self", "any"):
        raise ValueError(f"bad location {whole!r} (selectors are lowercase: {', '.join(SELECTORS)})")
    if not NAME_RE.fullmatch(text):
        raise ValueError(f"bad location {shown(whole)} (a node name or one of {', '.join(SELECTORS)})")


def check_location(value: Any, allow_server: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise ValueError(f"bad location {shown(value)} (a node name or one of {', '.join(SELECTORS)})")
    text = str(value).strip()
    if allow_server and text == "server":
        return text
    if text == "server":
        raise ValueError("location 'server' (the server's own node) is only for client.on")
    base, sep, parent = text.partition("@")
    if sep and not parent:
        raise ValueError(f"bad location {shown(text)}: nothing after '@'")
    _check_location_part(base, text)
    if sep:
        _check_location_part(parent, text)
    return text


def _bind(value: Any) -> str:
    return addresses.normalize_token(value, "bind")


def _target(value: Any) -> str:
    return addresses.normalize_token(value, "target")


def _expect(value: Any) -> Optional[str]:
    """"O", "X", "X ECONNRESET", "B EADDRNOTAVAIL", "n/a" or None; the errno is an errno or WSA name."""
    if value is None:
        return None
    words = value.split() if isinstance(value, str) else []
    if words and words[0].lower() in EXPECT_WORDS and len(words) <= 2:
        outcome = EXPECT_WORDS[words[0].lower()]
        if len(words) == 1:
            return outcome
        if outcome not in ("X", "B"):
            raise ValueError(f"expectation {value!r}: only X and B carry an errno")
        name = words[1].upper()
        if not known_errno(name):
            raise ValueError(f"expectation {value!r}: unknown errno {words[1]!r} (an errno name such as "
                             f"ECONNRESET, or a Windows one such as WSAECONNREFUSED)")
        return f"{outcome} {name}"
    raise ValueError(f"unknown expectation {value!r} (expected O, X, B, n/a or unknown; X and B may add "
                     f"an errno: 'X ECONNRESET')")


def split_expect(text: Optional[str]) -> tuple[Optional[Outcome], Optional[str]]:
    """("X", "ECONNRESET") from a validated expectation."""
    if text is None:
        return None, None
    outcome, _, name = text.partition(" ")
    return Outcome(outcome), name or None


def _socket(value: Any) -> str:
    if not isinstance(value, str) or value not in SOCKET_TYPES:
        raise ValueError(f"unknown socket type {value!r} (expected {', '.join(SOCKET_TYPES)})")
    return value


def _label(value: Any) -> str:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not NAME_RE.fullmatch(text):
        raise ValueError(f"bad label {shown(value)} ({NAME_RULE})")
    return text


def _name(value: Any) -> str:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not NAME_RE.fullmatch(text):
        raise ValueError(f"bad scenario name {shown(value)} ({NAME_RULE})")
    return text


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"port must be an integer, not {shown(value)}")
    problem = addresses.check_port(value)
    if problem:
        raise ValueError(problem)
    return value


def _service(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"service must be a GUID, not {shown(value)}")
    return addresses.parse_guid(value)


def _check_template(side: str, text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"command driver needs a non-empty {side}: template")
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text) if f is not None]
    except ValueError as err:
        raise ValueError(f"bad {side} template {shown(text)}: {err}") from None
    for name, spec, conversion in fields:
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} in {side} template takes no format spec or conversion "
                             f"(write {{{name}}} alone, not {shown('{' + name + ('!' + conversion if conversion else '') + (':' + spec if spec else '') + '}')})")
        if name not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown placeholder {{{name}}} in {side} template "
                             f"(known: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})")
    return text


def _driver(value: Any) -> Driver:
    if isinstance(value, Driver):
        return value
    if isinstance(value, str):
        if value in ("probe", "socat"):
            return Driver(kind=value)
        if value == "command":
            raise ValueError("a command driver is a mapping {kind: command, server: ..., client: ...}")
        raise ValueError(f"unknown driver {shown(value)} (expected probe, socat or {{kind: command, ...}})")
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"kind", "server", "client", "ready"}, key=str)
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in driver (allowed: kind, server, client, ready)")
        kind = value.get("kind", "command")
        if kind in ("probe", "socat"):
            if any(value.get(k) is not None for k in ("server", "client", "ready")):
                raise ValueError(f"driver {kind} takes no server/client templates or ready pattern")
            return Driver(kind=kind)
        if kind != "command":
            raise ValueError(f"unknown driver kind {shown(kind)} (expected probe, socat or command)")
        return Driver(kind="command", server=_check_template("server", value.get("server")),
                      client=_check_template("client", value.get("client")),
                      ready=check_ready_pattern(value.get("ready")))
    raise ValueError(f"unknown driver {shown(value)} (expected probe, socat or {{kind: command, ...}})")


def _axis(check):
    def run(value: Any) -> list[str]:
        if value is None or value == []:
            raise ValueError("empty axis: give at least one value")
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_AXIS_VALUES:
            raise ValueError(f"an axis of {len(items)} values (limit {MAX_AXIS_VALUES})")
        out: list[str] = []
        seen: set[str] = set()
        for item in items:
            token = check(item)
            if token in seen:
                raise ValueError(f"duplicate axis value {shown(item)}")
            seen.add(token)
            out.append(token)
        return out
    return run


Location = Annotated[str, BeforeValidator(check_location)]
ClientLocation = Annotated[str, BeforeValidator(lambda v: check_location(v, allow_server=True))]
BindToken = Annotated[str, BeforeValidator(_bind)]
TargetToken = Annotated[str, BeforeValidator(_target)]
Expect = Annotated[Optional[str], BeforeValidator(_expect)]
Port = Annotated[int, BeforeValidator(_port)]
Service = Annotated[str, BeforeValidator(_service)]
DriverField = Annotated[Any, BeforeValidator(_driver)]
SocketField = Annotated[str, BeforeValidator(_socket)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class ServerSide(_Strict):
    on: Location
    bind: BindToken


class ClientSide(_Strict):
    on: ClientLocation
    target: TargetToken


class CellModel(_Strict):
    label: Annotated[Optional[str], BeforeValidator(lambda v: None if v is None else _label(v))] = None
    server: ServerSide
    client: ClientSide
    expect: Expect = None
    source: Optional[str] = None
    disputed: StrictBool = False
    note: Optional[str] = None
    port: Optional[Port] = None
    service: Optional[Service] = None
    payload: Optional[str] = None
    timeout: Optional[Annotated[float, BeforeValidator(seconds)]] = None
    driver: Optional[DriverField] = None
    socket: Optional[SocketField] = None

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v):
        return v if v is None else check_timeout("timeout", v)


class AxesModel(_Strict):
    server_on: Annotated[list[str], BeforeValidator(_axis(check_location))] = Field(alias="server.on")
    server_bind: Annotated[list[str], BeforeValidator(_axis(_bind))] = Field(alias="server.bind")
    client_on: Annotated[list[str], BeforeValidator(_axis(lambda v: check_location(v, allow_server=True)))] = Field(alias="client.on")
    client_target: Annotated[list[str], BeforeValidator(_axis(_target))] = Field(alias="client.target")
    socket: Annotated[Optional[list[str]], BeforeValidator(_axis(_socket))] = None


class ScenarioModel(_Strict):
    scenario: Annotated[str, BeforeValidator(_name)]
    title: Optional[str] = None
    source: Optional[str] = None
    description: Optional[str] = None
    port: Optional[Port] = None
    port_base: Optional[Port] = None
    driver: DriverField = Driver()
    payload: str = DEFAULT_PAYLOAD
    timeout: Annotated[float, BeforeValidator(seconds)] = DEFAULT_TIMEOUT
    socket: SocketField = "stream"
    pairs: Literal["related", "any"] = "related"
    max_cells: StrictInt = DEFAULT_MAX_CELLS
    axes: Optional[AxesModel] = None
    cells: list[CellModel] = []

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v):
        return check_timeout("timeout", v)

    @field_validator("max_cells")
    @classmethod
    def _max_cells(cls, v):
        if not 1 <= v <= HARD_MAX_CELLS:
            raise ValueError(f"max_cells must be 1..{HARD_MAX_CELLS}, not {v}")
        return v


_FIELDS_AT = {
    "server": list(ServerSide.model_fields),
    "client": list(ClientSide.model_fields),
    "axes": [f.alias for f in AxesModel.model_fields.values()],
}


def _fields_for(loc: tuple) -> list[str]:
    if not loc:
        return list(ScenarioModel.model_fields)
    last = loc[-1]
    if isinstance(last, int):
        return list(CellModel.model_fields)
    return _FIELDS_AT.get(last, [])


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file; `data` keeps the YAML lines for messages during expansion."""

    name: str
    path: str
    model: ScenarioModel
    data: Any = field(repr=False, compare=False)

    def where(self, *loc: Any) -> str:
        return yamlfile.where(self.path, self.data, loc)


def _key(server_on: str, bind: str, client_on: str, target: str, driver: Driver, socket: str) -> tuple:
    return (server_on, bind, client_on, target, driver.kind, socket)


def parse_scenario(path: str, data: Any) -> Scenario:
    """Validate loaded YAML data; InputError("path:line: ...") on the first problem."""
    if not isinstance(data, dict):
        raise InputError(f"{path}:{getattr(data, 'line', 1)}", "a scenario file must be a mapping with 'scenario:'")
    yamlfile.reject_inline_secrets(path, data)
    _check_cell_count_early(path, data)
    try:
        model = ScenarioModel.model_validate(data)
    except ValidationError as exc:
        raise yamlfile.input_error_from_pydantic(path, data, exc, fields_for=_fields_for) from None
    sc = Scenario(name=model.scenario, path=path, model=model, data=data)
    if model.port is not None and model.port_base is not None:
        raise InputError(sc.where("port_base"), "give port: or port_base:, not both")
    if model.axes is None and not model.cells:
        raise InputError(sc.where(), "a scenario needs axes: or cells: (at least one cell)")
    seen_labels: dict[str, int] = {}
    seen_keys: dict[tuple, int] = {}
    for i, c in enumerate(model.cells):
        line = yamlfile.line_of(data, ("cells", i))
        if c.port is None and model.port is None and model.port_base is None:
            raise InputError(sc.where("cells", i), "cell has no port: give port: here or port:/port_base: at the top")
        if c.label is not None:
            if c.label in seen_labels:
                raise InputError(sc.where("cells", i, "label"),
                                 f"duplicate label {c.label!r} (first at line {seen_labels[c.label]})")
            seen_labels[c.label] = line
        client_on = c.server.on if c.client.on == "server" else c.client.on
        key = _key(c.server.on, c.server.bind, client_on, c.client.target, c.driver or model.driver,
                   c.socket or model.socket)
        if key in seen_keys:
            raise InputError(sc.where("cells", i), f"duplicate cell: same server, bind, client, target and socket as the cell at line {seen_keys[key]}")
        seen_keys[key] = line
    if model.axes is not None and model.port is None and model.port_base is None:
        raise InputError(sc.where("axes"), "axes cells need port: or port_base: at the top")
    if model.axes is not None:
        a = model.axes
        total = len(model.cells) + len(a.server_on) * len(a.server_bind) * len(a.client_on) * len(a.client_target)
        if total > model.max_cells:
            raise InputError(sc.where("axes"), _too_many(total, model.max_cells))
    return sc


def _too_many(count: int | None, limit: int) -> str:
    """The cap message: how many cells, the limit, and how to raise it."""
    if count is None:
        return (f"scenario expands to more than {limit} cells once matched against the inventory's nodes; "
                f"raise the limit with `max_cells: N` at the top (at most {HARD_MAX_CELLS})")
    return (f"scenario expands to {count} cells, over the limit of {limit}; "
            f"raise it with `max_cells: {min(count, HARD_MAX_CELLS)}` at the top (at most {HARD_MAX_CELLS})")


def _check_cell_count_early(path: str, data: dict) -> None:
    """Refuse a huge cells: list before validating each of its cells."""
    limit = data.get("max_cells")
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit <= HARD_MAX_CELLS else DEFAULT_MAX_CELLS
    cells = data.get("cells")
    if isinstance(cells, list) and len(cells) > limit:
        raise InputError(yamlfile.where(path, data, ("cells",)), _too_many(len(cells), limit))


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate one scenario file (no inventory needed)."""
    path = str(path)
    data = yamlfile.load(path)
    if not isinstance(data, dict) or "scenario" not in data:
        raise InputError(f"{path}:{getattr(data, 'line', 1)}", "not a scenario file (no top-level 'scenario:' key)")
    return parse_scenario(path, data)


# --- expansion --------------------------------------------------------------------------------
def _matches(node: Node, selector: str) -> bool:
    if selector == "host" or selector == "vm":
        return node.role == selector
    os_name, _, role = selector.partition("-")
    return node.os == os_name and node.role == role


def _match_part(token: str, inventory: Inventory) -> list[Node]:
    if token in SELECTORS:
        return [n for n in inventory.nodes.values() if _matches(n, token)]
    node = inventory.nodes.get(token)
    return [node] if node is not None else []


def match_location(token: str, inventory: Inventory) -> list[Node]:
    """Nodes a location token names, in inventory order (`server` is handled by the caller)."""
    base, sep, parent_token = token.partition("@")
    nodes = _match_part(base, inventory)
    if sep:
        parents = {n.name for n in _match_part(parent_token, inventory)}
        nodes = [n for n in nodes if n.parent in parents]
    return nodes


def related(a: Node, b: Node) -> bool:
    """Same node, parent and child, or siblings (same parent)."""
    return (a.name == b.name or a.parent == b.name or b.parent == a.name
            or (a.parent is not None and a.parent == b.parent))


@dataclass(frozen=True)
class _Spec:
    """One cell before inventory expansion (tokens), from an explicit cell or the axes."""

    server_on: str
    bind: str
    client_on: str
    target: str
    loc: tuple  # where in the YAML, for messages
    cell: Optional[CellModel] = None
    socket: Optional[str] = None  # from the axes; explicit cells carry theirs in `cell`


def _pairs(spec: _Spec, inventory: Inventory | None, pairs_mode: str):
    """(server name, client name, skip_reason, server node, client node) for one spec."""
    client_token = spec.server_on if spec.client_on == "server" else spec.client_on
    if inventory is None:
        yield spec.server_on, client_token, "no inventory (give --inventory PATH)", None, None
        return
    servers = match_location(spec.server_on, inventory)
    if not servers:
        yield spec.server_on, client_token, f"inventory {inventory.name} has no {spec.server_on} node", None, None
        return
    for s in servers:
        if spec.client_on == "server":
            yield s.name, s.name, None, s, s
            continue
        clients = match_location(spec.client_on, inventory)
        if not clients:
            yield s.name, spec.client_on, f"inventory {inventory.name} has no {spec.client_on} node", s, None
            continue
        kept = clients if pairs_mode == "any" else [c for c in clients if related(s, c)]
        if not kept:
            yield (s.name, spec.client_on,
                   f"inventory {inventory.name} has no {spec.client_on} node related to {s.name} "
                   f"(same node, parent/child or sibling)", s, None)
            continue
        for c in kept:
            yield s.name, c.name, None, s, c


def _specs(sc: Scenario):
    m = sc.model
    for i, c in enumerate(m.cells):
        yield _Spec(c.server.on, c.server.bind, c.client.on, c.client.target, ("cells", i), c)
    if m.axes is not None:
        a = m.axes
        # socket innermost: a cell's types come one after the other, so reports show them side by side
        for so, sb, co, ct, st in itertools.product(a.server_on, a.server_bind, a.client_on, a.client_target,
                                                    a.socket or [m.socket]):
            yield _Spec(so, sb, co, ct, ("axes",), None, st)


def expand(scenario: Scenario, inventory: Inventory | None) -> list[Cell]:
    """All cells of a scenario against an inventory (None: every cell skipped, names = tokens)."""
    m = scenario.model
    path = scenario.path
    out: list[Cell] = []
    index: dict[tuple, int] = {}
    where_cache: dict[tuple, str] = {}
    pairs_seen = 0
    for spec in _specs(scenario):
        c = spec.cell
        driver = (c.driver if c is not None and c.driver is not None else m.driver)
        sock = spec.socket or (c.socket if c is not None and c.socket is not None else m.socket)
        expected, expected_errno = split_expect(c.expect if c is not None else None)
        if spec.loc not in where_cache:
            where_cache[spec.loc] = scenario.where(*spec.loc)
        defined_at = where_cache[spec.loc]
        for server_name, client_name, skip, s_node, c_node in _pairs(spec, inventory, m.pairs):
            pairs_seen += 1
            if pairs_seen > m.max_cells * 2:  # selectors x inventory nodes multiply the axes
                raise InputError(scenario.where("axes"), _too_many(None, m.max_cells))
            key = _key(server_name, spec.bind, client_name, spec.target, driver, sock)
            if key in index:
                if c is not None:  # two explicit cells landed on the same nodes
                    first = out[index[key]].defined_at
                    raise InputError(defined_at, f"duplicate cell {out[index[key]].id} (also defined at {first})")
                continue  # the axes produce it again (overlapping selectors) or an explicit cell owns it
            cell_port = c.port if c is not None and c.port is not None else None
            port_loc = spec.loc + ("port",) if cell_port is not None else None
            if cell_port is None:
                if m.port is not None:
                    cell_port, port_loc = m.port, ("port",)
                else:
                    cell_port, port_loc = m.port_base + len(out), ("port_base",)
            families = {n.family for n in (s_node, c_node) if n is not None}
            family = "tcp" if "tcp" in families else None
            problem = addresses.check_port(cell_port, family)
            if problem:
                raise InputError(scenario.where(*port_loc), f"{problem} (cell {len(out)}: {server_name} <- {client_name})")
            index[key] = len(out)
            if len(out) >= m.max_cells:
                raise InputError(defined_at, _too_many(None, m.max_cells))
            out.append(Cell(
                scenario=m.scenario, server_on=server_name, bind=spec.bind, client_on=client_name,
                target=spec.target, port=cell_port,
                expected=expected, expected_errno=expected_errno, socket=sock,
                label=c.label if c is not None else None,
                source=c.source if c is not None else None,
                disputed=c.disputed if c is not None else False,
                note=c.note if c is not None else None,
                driver=driver,
                service=c.service if c is not None else None,
                payload=(c.payload if c is not None and c.payload is not None else m.payload),
                timeout=(c.timeout if c is not None and c.timeout is not None else m.timeout),
                skip_reason=skip, defined_at=defined_at,
            ))
    return out


def load_cells(path: str | Path, inventory: Inventory | None) -> list[Cell]:
    return expand(load_scenario(path), inventory)
