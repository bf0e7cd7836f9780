"""socat driver: the documents' own tool (`VSOCK-LISTEN` / `VSOCK-CONNECT`), or TCP4 for tcp nodes.

Server: `socat -d -d -t W VSOCK-LISTEN:<port>,reuseaddr SYSTEM:<echo>` where the echo answers
"Hello: " + payload like the documents' program; it is ready when socat logs "listening on".
Client: `socat -t W -T W - VSOCK-CONNECT:<cid>:<port>,connect-timeout=C` fed the payload.
C is the cell's timeout; W adds the server node's process start (spawned.start_margin): once the
client half-closes, both ends wait only -t (0.5 s by default) for the echo's output, and on a
nested guest the echo's shell alone takes 10-50 s to start. W is a bound, not a wait: an answered
or refused connection ends socat at once.
socat is never run with VSOCK on a node that is not a lab node (the controller's /dev/vsock
belongs to the infrastructure).
"""
from __future__ import annotations

from harness import addresses
from harness.agents import AgentPool
from harness.drivers.plan import CellPlan
from harness.drivers.spawned import run_client, server_failure, start_margin, start_server, stop_server
from harness.errors import NodeError
from harness.outcome import Observation, Outcome

VMADDR_CID_ANY = str(addresses.VMADDR_CID_ANY)  # as socat reads it in an address
# "Hello: " without ':' or ' ' in the text (socat 1.7.4 mangles ": " in SYSTEM): printf octal escapes,
# with backslashes doubled twice (socat halves them, then sh does)
ECHO = "SYSTEM:printf Hello" + "\\" * 4 + "072" + "\\" * 4 + "040; exec cat"
READY = "listening on"


def listen_address(family: str, addr: str, port: int) -> str:
    if family == "vsock":
        return f"VSOCK-LISTEN:{port},reuseaddr" + ("" if addr == VMADDR_CID_ANY else f",bind={addr}")
    return f"TCP4-LISTEN:{port},reuseaddr,bind={addr}"


def connect_address(family: str, addr: str, port: int, connect_timeout: float) -> str:
    kind = "VSOCK-CONNECT" if family == "vsock" else "TCP4"
    return f"{kind}:{addr}:{port},connect-timeout={connect_timeout:g}"


def server_argv(family: str, addr: str, port: int, timeout: float) -> list[str]:
    # socat logs to stderr; the transport streams stdout lines, so fold them together
    return ["sh", "-c", 'exec socat -d -d -t "$1" "$2" "$3" 2>&1', "socat-server", f"{timeout:g}",
            listen_address(family, addr, port), ECHO]


def client_argv(family: str, addr: str, port: int, connect_timeout: float, reply_wait: float) -> list[str]:
    return ["socat", "-t", f"{reply_wait:g}", "-T", f"{reply_wait:g}", "-",
            connect_address(family, addr, port, connect_timeout)]


def refusal(plan: CellPlan) -> str | None:
    if plan.cell.socket != "stream":  # socat >= 1.7.4 has VSOCK-LISTEN/VSOCK-CONNECT, both SOCK_STREAM
        return (f"socat has no {plan.cell.socket} socket here: its VSOCK-LISTEN/VSOCK-CONNECT (and TCP4) are "
                "stream sockets (use the probe driver)")
    for side, node in (("server", plan.server), ("client", plan.client)):
        if node.family == "hyperv":
            return f"socat has no AF_HYPERV: {side} {node.name} is a hyperv node (use the probe driver)"
        if node.family == "vsock" and not node.lab_node:
            return f"refused: socat VSOCK on {node.name}, which is not a lab node (lab_node: false)"
    return None


def run(plan: CellPlan, pool: AgentPool) -> Observation:
    cell = plan.cell
    obs = Observation(outcome=Outcome.E, server_address=plan.bind.display, client_address=plan.target.display)
    why = refusal(plan)
    if why:
        obs.outcome = Outcome.NA if why.startswith("socat has no") else Outcome.E
        obs.detail = why
        return obs
    if plan.bind.addr is None or plan.target.addr is None:  # the runner makes such cells n/a first
        obs.detail = "socat driver without a resolved address"
        return obs
    reply_wait = float(cell.timeout) + start_margin(plan.server)  # also the server's budget to get ready
    s_argv = server_argv(plan.server.family, plan.bind.addr, cell.port, reply_wait)
    c_argv = client_argv(plan.client.family, plan.target.addr, cell.port, float(cell.timeout), reply_wait)
    obs.commands.append(f"{plan.server.name}: socat -d -d -t {' '.join(s_argv[4:])}")
    try:
        s_transport = pool.transport(plan.server.name)
        start = start_server(s_transport, s_argv, lambda line: READY in line, reply_wait)
    except NodeError as exc:
        obs.detail = f"server: {exc}"
        return obs
    try:
        if not start.ready:
            return server_failure(obs, start, f"socat server on {plan.server.name}")
        obs.commands.append(f"{plan.client.name}: printf {cell.payload!r} | {' '.join(c_argv)}")
        try:
            c_transport = pool.transport(plan.client.name)
        except NodeError as exc:
            obs.detail = f"client: {exc}"
            return obs
        expected = plan.expected_reply
        return run_client(c_transport, c_argv, cell.payload.encode("utf-8"),
                          reply_wait + start_margin(plan.client), obs,
                          lambda rc, out, err: rc == 0 and out == expected)
    finally:
        stop_server(start.proc, obs)
