"""Probe driver (default): listen on the server node's agent, connect from the client's, stop.

With resident session agents a cell is three round-trips, no process start. The listener is
always stopped (finally), and its accept count cross-checks an O: an echo that did not come
from this cell's listener is E, not O.
"""
from __future__ import annotations

import json

from harness import timeouts
from harness.agents import AgentPool
from harness.drivers.plan import CellPlan
from harness.errors import NodeError
from harness.outcome import Observation, Outcome
from harness.probe.protocol import Event, event_of

# the client phases where the probe may say X: connect() failed, or (non-stream types) socket()
# refused the type, or a datagram was refused or never answered, or (client.phase bound) the
# kernel refused the client's own bind
X_PHASES = ("socket", "bind", "connect", "send", "reply")
VMADDR_CID_HYPERVISOR, VMADDR_CID_LOCAL, VMADDR_CID_HOST = 0, 1, 2


def server_options(cell) -> dict:
    """server.phase / server.unprivileged as the probe's listen options (probe/listener.py)."""
    return {"phase": cell.server_phase, "unprivileged": cell.unprivileged}


def client_options(cell, target_addr: str) -> dict:
    """client.phase as the probe's connect options (probe/client.py).

    second-cid connects first to another CID than the target's, so the socket changes transport
    (vsock_test "SOCK_STREAM transport change"): VMADDR_CID_LOCAL (the loopback transport), or,
    when the target already is CID 1, VMADDR_CID_HYPERVISOR (0), as vsock_test does.
    """
    options: dict = {"phase": cell.client_phase}
    if cell.client_phase == "second-cid":
        options["first_addr"] = str(VMADDR_CID_HYPERVISOR if str(target_addr) == str(VMADDR_CID_LOCAL)
                                    else VMADDR_CID_LOCAL)
    return options


def expected_peer(cell, server, client) -> tuple[int, str] | None:
    """The peer CID accept() must report, and how it was worked out; None when the cell names none.

    `client` is the client's CID as the server sees it: on the same machine (a namespace of it
    included) the loopback transport's VMADDR_CID_LOCAL; a host seen from its guest is
    VMADDR_CID_HOST; a guest seen from its host is the guest's own CID.
    """
    if cell.expect_peer is None:
        return None
    if cell.expect_peer != "client":
        return int(cell.expect_peer), "a number"
    if client.machine == server.machine:
        return VMADDR_CID_LOCAL, "client: same machine, the loopback transport"
    if server.role == "vm" and server.parent == client.machine:
        return VMADDR_CID_HOST, f"client: {server.name}'s host"
    return (client.cid if client.cid is not None else -1), f"client: {client.name}'s CID"


def _peer_cid(peers) -> int | None:
    """The CID of the first accepted peer ("cid:port" as the probe writes it)."""
    try:
        return int(str(peers[0]).split(":", 1)[0])
    except (IndexError, TypeError, ValueError):
        return None


def _record(commands: list[str], agent, op: str, **fields) -> None:
    """What was actually sent: the session request line, or the one-shot command line."""
    try:
        text = agent.describe(op, **fields)
    except Exception:  # describing must never cost the cell
        text = json.dumps(dict(op=op, **fields), sort_keys=True)
    commands.append(f"{agent.node.name}: {text}")


def run(plan: CellPlan, pool: AgentPool) -> Observation:
    cell, s_node, c_node = plan.cell, plan.server, plan.client
    obs = Observation(outcome=Outcome.E, server_address=plan.bind.display, client_address=plan.target.display)
    commands = obs.commands
    try:
        server = pool.agent(s_node.name)
        listen = dict(family=s_node.family, addr=plan.bind.addr, port=cell.port, service=plan.service_for(s_node),
                      timeout=timeouts.listener_lifetime(cell.timeout), count=1, socket=cell.socket,
                      **server_options(cell))
        _record(commands, server, "listen", **listen)
        ev = server.listen(**listen)
    except NodeError as exc:
        obs.detail = f"server: {exc}"
        return obs
    event = event_of(ev)
    if event == Event.BIND_FAILED:
        obs.outcome = Outcome.B
        obs.bind_errno, obs.bind_errno_name = ev.get("errno"), ev.get("errno_name")
        phase = ev.get("phase") or "bind"
        obs.extra["phase"] = phase
        what = f"{cell.socket} socket()" if phase == "socket" else f"{phase} {plan.bind.display} port {cell.port}"
        obs.detail = f"{what} failed: {ev.get('message', '')}".strip()
        return obs
    if event != Event.LISTENING:
        obs.detail = f"server on {s_node.name}: {event or 'no answer'}: {ev.get('message', '')}".strip()
        return obs
    listener = ev["listener"]
    obs.extra["listening"] = {k: ev[k] for k in ("addr", "port", "service") if k in ev}
    try:
        client = pool.agent(c_node.name)
        connect = dict(family=c_node.family, addr=plan.target.addr, port=cell.port,
                       service=plan.service_for(c_node), payload=cell.payload, timeout=float(cell.timeout),
                       connect_timeout=float(cell.timeout), socket=cell.socket,
                       **client_options(cell, str(plan.target.addr)))
        _record(commands, client, "connect", **connect)
        res = client.connect(**connect)
        _classify(obs, res, plan)
    except NodeError as exc:
        obs.outcome = Outcome.E
        obs.detail = f"client: {exc}"
    finally:
        try:
            _record(commands, server, "stop", listener=listener)
            stopped = server.stop(listener)
            obs.extra["server_accepted"] = stopped.get("accepted")
            obs.extra["server_peers"] = stopped.get("peers")
        except NodeError as exc:
            obs.extra["server_stop_error"] = str(exc)
            stopped = {}
    accepted = stopped.get("accepted")
    if obs.outcome is Outcome.O and accepted == 0 and getattr(server, "kind", "") == "session":
        obs.outcome = Outcome.E
        obs.detail = "the echo came back but this cell's listener accepted nothing (another server answered)"
    want = expected_peer(cell, s_node, c_node)
    if want is not None and obs.outcome is Outcome.O:
        obs.extra["peer_check"] = {"seen": _peer_cid(stopped.get("peers")), "expected": want[0], "as": want[1]}
    return obs


def _classify(obs: Observation, res: dict, plan: CellPlan) -> None:
    event = event_of(res)
    obs.elapsed_ms = res.get("elapsed_ms")
    obs.reply = res.get("reply")
    if event != Event.RESULT:
        obs.outcome = Outcome.E
        obs.detail = f"client on {plan.client.name}: {event or 'no answer'}: {res.get('message', '')}".strip()
        return
    outcome = res.get("outcome")
    obs.errno, obs.errno_name = res.get("errno"), res.get("errno_name")
    if res.get("phase"):
        obs.extra["phase"] = res["phase"]
    if res.get("messages") is not None:
        obs.extra["messages"] = res["messages"]
    if res.get("first") is not None:  # client.phase retry / bound / second-cid: the step before the connect
        obs.extra["first"] = res["first"]
    if outcome == "O" and res.get("reply") == plan.expected_reply:
        obs.outcome = Outcome.O
        obs.detail = f"echo {res.get('reply')!r}"
        if res.get("connect_ms") is not None:
            obs.extra["connect_ms"] = res["connect_ms"]
    elif outcome == "X" and res.get("phase") in X_PHASES:
        obs.outcome = Outcome.X
        phase = res["phase"]
        what = f"{plan.cell.socket} socket()" if phase == "socket" else \
            f"{phase} {plan.target.display} port {plan.cell.port}"
        obs.detail = f"{what}: {res.get('errno_name')} after {res.get('elapsed_ms', 0):.0f}ms"
    else:
        obs.outcome = Outcome.E
        obs.detail = f"{res.get('phase', '?')} failed: {res.get('errno_name') or ''} {res.get('message', '')}".strip()
