"""Command-template driver: any tool as server and client (e.g. the documents' ConsoleApp1.exe).

Templates (Driver.server, Driver.client) take {bind} {target} {addr} {port} {service} {payload}
{vm_id} {cid} {timeout} {socket}: bind/target are the resolved addresses, addr is the side's own one
(bind for the server, target for the client), vm_id/cid are the server node's, timeout the cell's (s),
socket the cell's socket type (stream, seqpacket, dgram).
Values are quoted, then the text is split into argv by the rules of the node that runs it
(harness/command_line.py): shlex on POSIX nodes, the C runtime's (CommandLineToArgvW) on Windows
nodes, so `C:\\temp\\ConsoleApp1.exe` stays one path. No shell unless the template calls one.

When the server listens (`ready:` in the driver, a regex, is the one sure sign):
  ready given        the first stdout line that matches it;
  else, Linux nodes  `ss --listening` lists the cell's port (tcp, vsock), for servers that print
                     nothing useful (`socat VSOCK-LISTEN:22,fork TCP:localhost:22`);
  else               the server is taken as listening when it is still alive after its start
                     margin (spawned.start_margin). The first line proves nothing: ConsoleApp1
                     prints `Process ID: N` before Bind().
A server that exits before it is ready is B when its own output names a bind errno (a .NET
SocketException from Socket.Bind, socat's `bind(...)`), else E. The client decides the cell:
  O  exit 0 and, when the template sends {payload}, "Hello: <payload>" in its stdout;
  X  non-zero exit with a recognisable connect errno in its output (ECONNREFUSED, "Connection
     refused", WSAECONNREFUSED, 10061 ...) -- unless the server has exited meanwhile: then the
     refusal was the server's failure, B or E as above, never X;
  E  anything else, including a client cut at its budget (killed on the node): the cell's
     timeout plus a process start on the client node (spawned.start_margin), since on a nested
     lab guest a process start alone takes 10-50 s.
"""
from __future__ import annotations

import string

from harness.agents import AgentPool
from harness.cell import TEMPLATE_FIELDS
from harness.command_line import join_for, quote_for, split_for
from harness.drivers.command_ready import ready_matcher
from harness.drivers.plan import CellPlan
from harness.drivers.spawned import (
    exited_since,
    run_client,
    server_failure,
    start_margin,
    start_server,
    stop_server,
)
from harness.errors import NodeError
from harness.outcome import Observation, Outcome


def render(template: str, values: dict[str, object], os_name: str = "linux") -> list[str]:
    """Fill the template with values quoted for `os_name` and split it into argv by that OS's rules
    (ValueError when malformed)."""
    fmt = string.Formatter()
    for _, name, _, _ in fmt.parse(template):
        if name is not None and name not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown placeholder {{{name}}} (known: {', '.join(TEMPLATE_FIELDS)})")
    quoted = {k: quote_for(os_name, "" if v is None else str(v)) for k, v in values.items()}
    return split_for(os_name, template.format(**quoted))


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
        s_argv = render(driver.server, values_for(plan, "server"), plan.server.os) if driver.server else None
        c_argv = render(driver.client, values_for(plan, "client"), plan.client.os)
    except ValueError as exc:
        obs.detail = f"command template: {exc}"
        return obs
    start = None
    what = f"server command on {plan.server.name}"
    try:
        if s_argv:
            obs.commands.append(f"{plan.server.name}: {join_for(plan.server.os, s_argv)}")
            margin = start_margin(plan.server)
            try:
                start = start_server(pool.transport(plan.server.name), s_argv,
                                     ready_matcher(driver.ready) if driver.ready else None,
                                     float(cell.timeout) + margin, listener=(plan.server.family, cell.port),
                                     settle=margin)
            except NodeError as exc:
                obs.detail = f"server: {exc}"
                return obs
            if not start.ready:
                if not start.exited and driver.ready:
                    obs.detail = f"{what} not ready in time (no line matching ready: {driver.ready!r})"
                    return obs
                return server_failure(obs, start, what)
            if start.assumed:
                obs.extra["server_ready"] = f"assumed: alive after its start margin ({margin:g}s)"
        obs.commands.append(f"{plan.client.name}: {join_for(plan.client.os, c_argv)}")
        try:
            transport = pool.transport(plan.client.name)
        except NodeError as exc:
            obs.detail = f"client: {exc}"
            return obs
        expected = plan.expected_reply
        needs_echo = "{payload}" in driver.client
        run_client(transport, c_argv, None, float(cell.timeout) + start_margin(plan.client), obs,
                   lambda rc, out, err: rc == 0 and (not needs_echo or expected in out))
        if obs.outcome is Outcome.X and start is not None:
            ended = exited_since(start)  # refused because the server is gone: its failure, not the cell's
            if ended is not None:
                start = ended
                server_failure(obs, ended, what, when="while the client ran")
        return obs
    finally:
        if start is not None:
            stop_server(start.proc, obs)
