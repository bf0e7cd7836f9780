"""A scenario file's model: the checks of every token and field (pydantic, strict) and the parsed
`Scenario`; every error is one "path:line: message" line. The format is described in
docs/scenario-format.md; the cells a scenario gives against an inventory are expansion.py.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)

from harness import addresses, model_errors, timeouts, yamlfile
from harness.cell import SOCKET_TYPES, TEMPLATE_FIELDS, Driver, DriverKind, variant_of
from harness.drivers.command_ready import check_ready_pattern
from harness.drivers.errnos import known_errno
from harness.errors import InputError
from harness.node import NAME_RE, NAME_RULE, check_timeout, seconds, shown
from harness.outcome import Outcome
from harness.secrets import credential_in_text

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


def _expect(value: Any) -> str | None:
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


def split_expect(text: str | None) -> tuple[Outcome | None, str | None]:
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
    if credential_in_text(text):  # never echoed: the template is where the secret is
        raise ValueError(f"the {side} template carries a password inline (a URL's user:pw@, smbclient's "
                         f"user%pw, password=, --password, sshpass -p); a scenario holds no secrets: let the node's own configuration "
                         f"(an ssh key, a credential store) provide it")
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
        if value == "probe" or value == "socat":
            return Driver(kind=cast(DriverKind, value))
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
Expect = Annotated[str | None, BeforeValidator(_expect)]
Port = Annotated[int, BeforeValidator(_port)]
Service = Annotated[str, BeforeValidator(_service)]
DriverField = Annotated[Any, BeforeValidator(_driver)]
SocketField = Annotated[str, BeforeValidator(_socket)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class ServerSide(_Strict):
    on: Location
    bind: BindToken
    phase: Literal["listening", "bound", "none", "closed"] = "listening"  # cell.SERVER_PHASES
    unprivileged: StrictBool = False


class ClientSide(_Strict):
    on: ClientLocation
    target: TargetToken
    phase: Literal["connect", "retry", "bound", "second-cid"] = "connect"  # cell.CLIENT_PHASES


def _peer(v: Any) -> str | None:
    """expect_peer: `client` or a CID (a number)."""
    if v is None:
        return None
    if v == "client" or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFFFFFF):
        return str(v)
    raise ValueError(f"expect_peer is `client` or a CID (0..4294967295), not {v!r}")


class CellModel(_Strict):
    label: Annotated[str | None, BeforeValidator(lambda v: None if v is None else _label(v))] = None
    server: ServerSide
    client: ClientSide
    expect: Expect = None
    source: str | None = None
    disputed: StrictBool = False
    note: str | None = None
    port: Port | None = None
    service: Service | None = None
    payload: str | None = None
    timeout: Annotated[float, BeforeValidator(seconds)] | None = None
    driver: DriverField | None = None
    socket: SocketField | None = None
    expect_peer: Annotated[str | None, BeforeValidator(_peer)] = None

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v):
        return v if v is None else check_timeout("timeout", v)


class AxesModel(_Strict):
    server_on: Annotated[list[str], BeforeValidator(_axis(check_location))] = Field(alias="server.on")
    server_bind: Annotated[list[str], BeforeValidator(_axis(_bind))] = Field(alias="server.bind")
    client_on: Annotated[list[str], BeforeValidator(_axis(lambda v: check_location(v, allow_server=True)))] = Field(alias="client.on")
    client_target: Annotated[list[str], BeforeValidator(_axis(_target))] = Field(alias="client.target")
    socket: Annotated[list[str] | None, BeforeValidator(_axis(_socket))] = None
    server_phase: list[Literal["listening", "bound", "none", "closed"]] | None = Field(default=None,
                                                                                      alias="server.phase")
    client_phase: list[Literal["connect", "retry", "bound", "second-cid"]] | None = Field(default=None,
                                                                                        alias="client.phase")


class ScenarioModel(_Strict):
    scenario: Annotated[str, BeforeValidator(_name)]
    title: str | None = None
    source: str | None = None
    description: str | None = None
    port: Port | None = None
    port_base: Port | None = None
    driver: DriverField = Driver()
    payload: str = DEFAULT_PAYLOAD
    timeout: Annotated[float, BeforeValidator(seconds)] = DEFAULT_TIMEOUT
    socket: SocketField = "stream"
    pairs: Literal["related", "any"] = "related"
    # nodes the whole scenario is about (e.g. a --netns lab's namespace nodes): on an inventory
    # without any of them every cell is "not run here", even one whose own nodes exist (vm22 on a
    # lab without namespaces is not vm22 in local0)
    needs_nodes: list[Annotated[str, BeforeValidator(_name)]] = []
    max_cells: StrictInt = DEFAULT_MAX_CELLS
    axes: AxesModel | None = None
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
    "server": model_errors.keys_of(ServerSide),
    "client": model_errors.keys_of(ClientSide),
    "axes": model_errors.keys_of(AxesModel),
}


def _fields_for(loc: tuple) -> list[str]:
    if not loc:
        return model_errors.keys_of(ScenarioModel)
    last = loc[-1]
    if isinstance(last, int):
        return model_errors.keys_of(CellModel)
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


def _key(server_on: str, bind: str, client_on: str, target: str, driver: Driver, socket: str,
         variant: str = "") -> tuple:
    return (server_on, bind, client_on, target, driver.kind, socket, variant)


def parse_scenario(path: str, data: Any) -> Scenario:
    """Validate loaded YAML data; InputError("path:line: ...") on the first problem."""
    if not isinstance(data, dict):
        raise InputError(f"{path}:{getattr(data, 'line', 1)}", "a scenario file must be a mapping with 'scenario:'")
    yamlfile.reject_inline_secrets(path, data)
    _check_cell_count_early(path, data)
    try:
        model = ScenarioModel.model_validate(data)
    except ValidationError as exc:
        raise model_errors.input_error_from_pydantic(path, data, exc, fields_for=_fields_for) from None
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
                   c.socket or model.socket, variant_of(c.server.phase, c.client.phase, c.server.unprivileged))
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
