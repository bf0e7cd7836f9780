"""Command-template driver: any tool as server and client (e.g. the documents' ConsoleApp1.exe).

Templates (Driver.server, Driver.client) take {bind} {target} {addr} {port} {service} {payload}
{vm_id} {cid} {timeout} {socket}: bind/target are the resolved addresses, addr is the side's own one
(bind for the server, target for the client), vm_id/cid are the server node's, timeout the cell's (s),
socket the cell's socket type (stream, seqpacket, dgram).
Values are shell-quoted, then the text is split into argv (no shell unless the template calls one).

The server runs in the background and is ready at its first line of stdout, or -- on Linux
nodes, tcp and vsock -- as soon as `ss --listening` on the node lists its port (servers that
print nothing, like `socat VSOCK-LISTEN:22,fork TCP:localhost:22`). Never a sleep. The client decides the cell:
  O  exit 0 and, when the template sends {payload}, "Hello: <payload>" in its stdout;
  X  non-zero exit with a recognisable connect errno in its output (ECONNREFUSED, "Connection
     refused", WSAECONNREFUSED, 10061 ...);
  E  anything else, including a client cut at its budget (killed on the node): the cell's
     timeout plus a process start on the client node (spawned.start_margin), since on a nested
     lab guest a process start alone takes 10-50 s.
"""
from __future__ import annotations

import shlex
import string

from harness.agents import AgentPool
from harness.cell import TEMPLATE_FIELDS
from harness.drivers.plan import CellPlan
from harness.drivers.spawned import start_margin, run_client, server_failure, start_server, stop_server
from harness.errors import NodeError
from harness.outcome import Observation, Outcome


def render(template: str, values: dict[str, object]) -> list[str]:
    """Fill the template with shell-quoted values and split it into argv (ValueError when malformed)."""
    fmt = string.Formatter()
    for _, name, _, _ in fmt.parse(template):
        if name is not None and name not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown placeholder {{{name}}} (known: {', '.join(TEMPLATE_FIELDS)})")
    quoted = {k: shlex.quote("" if v is None else str(v)) for k, v in values.items()}
    return shlex.split(template.format(**quoted))


def values_for(plan: CellPlan, side: str) -> dict[str, object]:
    return {"bind": plan.bind.addr, "target": plan.target.addr,
            "addr": plan.bind.addr if side == "server" else plan.target.addr,
            "port": plan.cell.port, "service": plan.service, "payload": plan.cell.payload,
            "vm_id": plan.server.vm_id, "cid": plan.server.cid, "timeout": f"{float(plan.cell.timeout):g}",
            "socket": plan.cell.socket}


def run(plan: CellPlan, pool: AgentPool) -> Observation:
    cell, driver = plan.cell, plan.cell.driver
    obs = Observation(outcome=Outcome.E, server_address=plan.bind.display, client_address=plan.target.display)
    if not driver.client:
        obs.detail = "command driver without a client template"
        return obs
    try:
        s_argv = render(driver.server, values_for(plan, "server")) if driver.server else None
        c_argv = render(driver.client, values_for(plan, "client"))
    except ValueError as exc:
        obs.detail = f"command template: {exc}"
        return obs
    start = None
    try:
        if s_argv:
            obs.commands.append(f"{plan.server.name}: {shlex.join(s_argv)}")
            try:
                start = start_server(pool.transport(plan.server.name), s_argv, lambda line: True,
                                     float(cell.timeout) + start_margin(plan.server), listener=(plan.server.family, cell.port))
            except NodeError as exc:
                obs.detail = f"server: {exc}"
                return obs
            if not start.ready:
                return server_failure(obs, start, f"server command on {plan.server.name}")
        obs.commands.append(f"{plan.client.name}: {shlex.join(c_argv)}")
        try:
            transport = pool.transport(plan.client.name)
        except NodeError as exc:
            obs.detail = f"client: {exc}"
            return obs
        expected = plan.expected_reply
        needs_echo = "{payload}" in driver.client
        return run_client(transport, c_argv, None, float(cell.timeout) + start_margin(plan.client), obs,
                          lambda rc, out, err: rc == 0 and (not needs_echo or expected in out))
    finally:
        if start is not None:
            stop_server(start.proc, obs)
