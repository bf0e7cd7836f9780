"""The probe's JSON-line protocol, defined once: requests, answers and their types.

Stdlib only, Python >= 3.8: this module is part of the zipapp shipped to nodes AND what the
controller's agents and drivers import, so both sides read one definition. Every line is one
JSON object. A request is {"id": N, "op": OP, <REQUEST_FIELDS[OP]>}; its answer carries the same
id and one of ANSWER_EVENTS[OP]; lines with "id": null come unasked (UNASKED_EVENTS). The
one-shot commands (`serve`, `connect`, `info`) print the same answer objects without an id.

Code outside this module never compares an answer's "event" to a string: it asks `event_of`
and compares to the constants of `Event`, or calls the `is_*` helpers.
"""
import json
from typing import Any, Dict, List, Optional, TypedDict, Union


class Op:
    """Request operations."""

    LISTEN = "listen"
    CONNECT = "connect"
    STOP = "stop"
    INFO = "info"
    PING = "ping"
    BYE = "bye"
    SERVICES = "services"  # Hyper-V service GUID registration (Windows hosts)


class Event:
    """Answer kinds (the "event" field of every line the probe prints)."""

    READY = "ready"  # a session started (unasked)
    LISTENING = "listening"
    BIND_FAILED = "bind_failed"
    REFUSED = "refused"  # AF_VSOCK off a lab node
    ERROR = "error"
    RESULT = "result"  # a connect's outcome
    STOPPED = "stopped"
    INFO = "info"
    PONG = "pong"
    BYE = "bye"
    ACCEPTED = "accepted"  # a listener answered a client (unasked in a session)
    DONE = "done"  # a one-shot `serve` ended
    IDLE_TIMEOUT = "idle_timeout"  # a session ended itself (unasked)
    SERVICES = "services"  # what a services request did, or the listing


# -- requests -------------------------------------------------------------------------------------

class ListenRequest(TypedDict, total=False):
    id: int
    op: str  # Op.LISTEN
    family: str  # tcp, vsock, hyperv, hybrid (the host side of hybrid vsock: AF_UNIX, probe/hybrid.py)
    addr: str
    port: int
    service: Optional[str]  # Hyper-V service GUID; default: the vsock template with the port
    count: int  # clients to answer; 0 = until stopped or timed out
    timeout: float
    socket: str  # stream, seqpacket, dgram
    phase: str  # listening (default), bound, none, closed (listener.SERVER_PHASES)
    unprivileged: bool  # socket() and bind() as nobody (unprivileged.py)


class ConnectRequest(TypedDict, total=False):
    id: int
    op: str  # Op.CONNECT
    family: str
    addr: str
    port: int
    service: Optional[str]
    payload: str
    timeout: float
    connect_timeout: Optional[float]
    socket: str
    phase: str  # connect (default), retry, bound, second-cid (client.CLIENT_PHASES)
    first_addr: Optional[str]  # second-cid: the CID connected to first (default 0)
    first_port: Optional[int]  # retry: the port of the failing first connect (default 1)


class StopRequest(TypedDict, total=False):
    id: int
    op: str  # Op.STOP
    listener: str


class ServicesRequest(TypedDict, total=False):
    id: int
    op: str  # Op.SERVICES
    action: str  # register, unregister, list
    items: List[str]  # GUIDs, vsock ports, port ranges ("19000-19099")
    owner: Optional[str]  # the controller run's owner tag (harness/hyperv/ownership.py)


class PlainRequest(TypedDict, total=False):
    id: int
    op: str  # Op.INFO, Op.PING, Op.BYE


Request = Union[ListenRequest, ConnectRequest, StopRequest, ServicesRequest, PlainRequest]

# -- answers --------------------------------------------------------------------------------------


class Ready(TypedDict, total=False):
    id: None
    event: str  # Event.READY
    pid: int
    python: str
    lab_node: bool


class Listening(TypedDict, total=False):
    id: Optional[int]
    event: str  # Event.LISTENING
    family: str
    addr: str
    port: int
    service: str  # hyperv: the service GUID bound
    socket: str
    listener: str  # the name to stop it by
    phase: str  # bound, none, closed when asked (absent: listening)
    unprivileged: bool
    paths: List[str]  # hybrid: the <uds>_<port> paths bound


class BindFailed(TypedDict, total=False):
    id: Optional[int]
    event: str  # Event.BIND_FAILED
    phase: str  # socket, bind, listen
    socket: str
    errno: Optional[int]
    errno_name: Optional[str]
    message: str


class Result(TypedDict, total=False):
    id: Optional[int]
    event: str  # Event.RESULT
    family: str
    addr: str
    port: int
    socket: str
    outcome: str  # O, X, E
    phase: str  # socket, setup, connect, send, reply
    errno: Optional[int]
    errno_name: Optional[str]
    reply: Optional[str]
    messages: List[str]  # seqpacket: every echo
    message: str
    elapsed_ms: float
    connect_ms: float
    first: Dict[str, Any]  # retry / bound / second-cid: what the step before the connect saw
    answer: str  # hybrid: the backend's answer to CONNECT <port> ("OK 1024\n", or what came instead)


class Accepted(TypedDict, total=False):
    id: None
    event: str  # Event.ACCEPTED
    listener: str
    peer: str
    received: str
    messages: List[str]
    error: str


class Stopped(TypedDict, total=False):
    id: Optional[int]
    event: str  # Event.STOPPED
    accepted: int
    peers: List[str]
    errors: List[str]


class Facts(TypedDict, total=False):
    id: Optional[int]
    event: str  # Event.INFO
    hostname: str
    os: str  # linux, windows
    kernel: str
    python: str
    local_cid: Optional[int]
    local_cid_error: str
    dev_vsock: bool
    vsock_modules: List[str]
    socat_version: Optional[str]
    vm_id: Optional[str]
    vm_id_source: Optional[str]
    lab_node: bool
    af_hyperv: bool
    python_problem: Optional[str]
    refused: List[str]
    vsock_ns_mode: Optional[str]  # Linux >= 7.0: the network namespace's vsock mode (global, local)
    vsock_child_ns_mode: Optional[str]  # what namespaces made from this one get


class ServiceEntry(TypedDict):
    guid: str
    key: str  # the subkey's own name (braced or not)
    element: str  # ElementName
    owner: str  # the owner tag, "" when untagged


class Services(TypedDict, total=False):
    id: Optional[int]
    event: str  # Event.SERVICES
    added: List[str]
    present: List[str]  # found registered already: never ours
    removed: List[str]
    absent: List[str]
    foreign: List[str]  # another name or owner, or untagged: left alone
    services: List[ServiceEntry]  # action list


class Failure(TypedDict, total=False):
    id: Optional[int]
    event: str  # Event.ERROR or Event.REFUSED
    message: str


class Other(TypedDict, total=False):
    id: Optional[int]
    event: str  # Event.PONG, Event.BYE, Event.DONE, Event.IDLE_TIMEOUT
    listeners: List[str]
    accepted: int
    peers: List[str]
    idle_s: float


Answer = Union[Ready, Listening, BindFailed, Result, Accepted, Stopped, Facts, Services, Failure, Other]

# -- the tables -----------------------------------------------------------------------------------

REQUEST_FIELDS = {
    Op.LISTEN: ("family", "addr", "port", "service", "count", "timeout", "socket", "phase", "unprivileged"),
    Op.CONNECT: ("family", "addr", "port", "service", "payload", "timeout", "connect_timeout", "socket", "phase",
                 "first_addr", "first_port"),
    Op.STOP: ("listener",),
    Op.INFO: (),
    Op.PING: (),
    Op.BYE: (),
    Op.SERVICES: ("action", "items", "owner"),
}
REQUIRED_FIELDS = {Op.LISTEN: ("family", "addr", "port"), Op.CONNECT: ("family", "addr", "port"),
                   Op.STOP: ("listener",), Op.SERVICES: ("action",)}
ANSWER_EVENTS = {
    Op.LISTEN: (Event.LISTENING, Event.BIND_FAILED, Event.REFUSED, Event.ERROR),
    Op.CONNECT: (Event.RESULT, Event.REFUSED, Event.ERROR),
    Op.STOP: (Event.STOPPED, Event.ERROR),
    Op.INFO: (Event.INFO, Event.ERROR),
    Op.PING: (Event.PONG,),
    Op.BYE: (Event.BYE,),
    Op.SERVICES: (Event.SERVICES, Event.ERROR),
}
UNASKED_EVENTS = (Event.READY, Event.ACCEPTED, Event.IDLE_TIMEOUT, Event.ERROR)


def request_problem(req: Dict[str, Any]) -> Optional[str]:
    """Why `req` (a dict) is not a request of this protocol, or None."""
    op = req.get("op")
    if op not in REQUEST_FIELDS:
        return f"unknown op {op!r}"
    unknown = sorted(set(req) - set(REQUEST_FIELDS[op]) - {"id", "op"})
    if unknown:
        return "{} takes no {}".format(op, ", ".join(unknown))
    missing = [name for name in REQUIRED_FIELDS.get(op, ()) if req.get(name) is None]
    if missing:
        return "{} needs {}".format(op, ", ".join(missing))
    return None


def request_line(rid: int, op: str, **fields: Any) -> str:
    """One request as its line; a request this probe would refuse is refused here already."""
    req = dict(fields, id=rid, op=op)
    problem = request_problem(req)
    if problem:
        raise ValueError(problem)
    return json.dumps(req, sort_keys=True)


def answer_line(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def parse_line(line: Optional[str]) -> Optional[Dict[str, Any]]:
    """A protocol line as a dict; None for anything else (a login banner, a line cut short)."""
    try:
        obj = json.loads(line) if line else None
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def event_of(answer: Any) -> Optional[str]:
    """The kind of an answer (one of Event), None for no answer or a line without one."""
    if not isinstance(answer, dict):
        return None
    kind = answer.get("event")
    return kind if isinstance(kind, str) else None


def is_ready(answer: Any) -> bool:
    return event_of(answer) == Event.READY


def is_listening(answer: Any) -> bool:
    return event_of(answer) == Event.LISTENING


def is_bind_failed(answer: Any) -> bool:
    return event_of(answer) == Event.BIND_FAILED


def is_result(answer: Any) -> bool:
    return event_of(answer) == Event.RESULT


def is_accepted(answer: Any) -> bool:
    return event_of(answer) == Event.ACCEPTED


def is_done(answer: Any) -> bool:
    return event_of(answer) == Event.DONE


def is_services(answer: Any) -> bool:
    return event_of(answer) == Event.SERVICES


def is_error(answer: Any) -> bool:
    return event_of(answer) in (Event.ERROR, Event.REFUSED)


def error(message: str, rid: Optional[int] = None, refused: bool = False) -> Failure:
    """An error (or refused) answer."""
    out: Failure = {"event": Event.REFUSED if refused else Event.ERROR, "message": message}
    if rid is not None:
        out["id"] = rid
    return out
