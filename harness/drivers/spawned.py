"""Shared mechanics of the drivers that start real programs (socat, user commands).

A server is spawned through the node's transport and awaited on its own output (a readiness
line), never with a sleep; a client runs with the cell's timeout and is killed on the node
when it hangs. Both turn what they saw into the fields of an Observation.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness import timeouts
from harness.drivers.errnos import CONNECT_FAILURES, find_errno
from harness.errors import NodeError
from harness.node import Node
from harness.outcome import Observation, Outcome
from harness.transports.base import CommandTimeout, Process, Transport


def start_margin(node: Node) -> float:
    """How long beyond the cell's timeout a program started on the node may take: its process
    start, which the inventory's connect_timeout already sizes (nested lab guests: minutes).
    The cell's timeout stays the budget of the connection itself."""
    # this machine (or a namespace of it): no connection to size it by
    return timeouts.start_margin(node.access.connect_timeout, local=node.access.kind == "local")


@dataclass
class ServerStart:
    proc: Process | None
    ready: bool
    lines: list[str] = field(default_factory=list)
    exited: bool = False
    rc: int | None = None
    assumed: bool = False  # nothing says it listens: it was alive when its start margin ran out

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def listener_wait_argv(family: str, port: int, timeout: float) -> list[str]:
    """One command that returns 0 once the node's `ss` shows a listener on `port` (no controller polling).

    Like the kernel's vsock selftests: a listener is awaited with `ss --listening`, never a sleep.
    """
    which = "--vsock" if family == "vsock" else "-t"
    tries = max(1, int(timeout / 0.1))
    script = (f'i=0; while [ "$i" -lt {tries} ]; do '
              f'ss -Hln {which} 2>/dev/null | grep -Eq "[:.]{int(port)}[[:space:]]" && exit 0; '
              f'sleep 0.1; i=$((i+1)); done; exit 1')
    return ["sh", "-c", script]


def start_server(transport: Transport, argv: list[str], is_ready: Callable[[str], bool] | None, timeout: float,
                 listener: tuple[str, int] | None = None, settle: float = 0.0) -> ServerStart:
    """Spawn and wait until the server is ready, it exits, or `timeout` passes.

    Ready is, in this order of trust: a stdout line that `is_ready` accepts; else (`listener` =
    (family, port), Linux nodes, tcp and vsock) `ss` listing its listener, for servers that print
    nothing useful; else nothing can tell, and the server is taken as listening when it is still
    alive after `settle` seconds (its start margin). A server that exits first is never ready.
    """
    proc = transport.spawn(argv)
    watcher: Process | None = None
    if is_ready is None and listener is not None and transport.node.os == "linux" and listener[0] in ("tcp", "vsock"):
        try:
            watcher = transport.spawn(listener_wait_argv(listener[0], listener[1], timeout))
        except NodeError:
            watcher = None
    try:
        return _await_ready(proc, watcher, is_ready, timeout, listener, settle)
    finally:
        if watcher is not None and watcher.wait(0) is None:
            watcher.kill()


def _await_ready(proc: Process, watcher: Process | None, is_ready: Callable[[str], bool] | None, timeout: float,
                 listener: tuple[str, int] | None, settle: float) -> ServerStart:
    lines: list[str] = []
    start = time.monotonic()
    deadline = start + timeout
    assume_at = start + min(settle, timeout) if is_ready is None and watcher is None else None
    while True:
        if watcher is not None and watcher.wait(0) == 0:
            port = listener[1] if listener is not None else "?"
            return ServerStart(proc, True, [*lines, f"(ss lists a listener on port {port})"])
        now = time.monotonic()
        if assume_at is not None and now >= assume_at:
            return ServerStart(proc, True, lines, assumed=True)
        until = assume_at if assume_at is not None else deadline
        step = max(0.0, until - now)
        try:
            line = proc.read_line(min(step, timeouts.READY_POLL) if watcher is not None else step)
        except TimeoutError:
            if time.monotonic() < until:
                continue
            if assume_at is not None:
                continue  # the margin ran out with the server alive: assumed (next pass)
            return ServerStart(proc, False, lines)
        if line is None:
            return _ended(proc, lines)
        lines.append(line)
        if is_ready is not None and is_ready(line):
            return ServerStart(proc, True, lines)


def _ended(proc: Process, lines: list[str]) -> ServerStart:
    rc = proc.wait(timeouts.PROCESS_EXIT)
    tail = proc.stderr_tail()
    return ServerStart(None, False, lines + ([tail] if tail else []), exited=True, rc=rc)


def exited_since(start: ServerStart) -> ServerStart | None:
    """The server as it ended, if it has exited since it was taken as ready (all it printed), else None."""
    proc = start.proc
    if proc is None or proc.wait(0) is None:
        return None
    lines = list(start.lines)
    while True:
        try:
            line = proc.read_line(timeouts.STOP_DRAIN)
        except TimeoutError:
            break
        if line is None:
            break
        lines.append(line)
    return _ended(proc, lines)


def stop_server(proc: Process | None, obs: Observation) -> None:
    if proc is None:
        return
    try:
        proc.kill()
    except Exception as exc:  # the node may be gone; the cell's result stands
        obs.extra["server_stop_error"] = str(exc)


def server_failure(obs: Observation, start: ServerStart, what: str, when: str = "before it was ready"
                   ) -> Observation:
    """B when the server's own words name a bind errno, else E (never X: the client was not the problem)."""
    found = find_errno(start.text)
    if start.exited and found and ("bind" in start.text.lower() or "listen" in start.text.lower()):
        obs.outcome = Outcome.B
        obs.bind_errno_name, obs.bind_errno = found
        obs.errno = obs.errno_name = None
        said = [line for line in start.lines if find_errno(line)] or start.lines or ["?"]
        obs.detail = f"{what} could not bind: {said[0].strip()[:200]}"
    elif start.exited:
        obs.outcome = Outcome.E
        obs.errno = obs.errno_name = None
        obs.detail = f"{what} exited (rc={start.rc}) {when}: {' | '.join(start.lines[-3:])}"
    else:
        obs.outcome = Outcome.E
        obs.detail = f"{what} not ready in time (no readiness line)"
    return obs


def run_client(transport: Transport, argv: list[str], stdin: bytes | None, timeout: float, obs: Observation,
               judge: Callable[[int, str, str], bool]) -> Observation:
    """Run the client; O if judge(rc, stdout, stderr), X if it failed naming a connect errno, else E."""
    try:
        res = transport.run(argv, timeout=timeout, stdin=stdin)
    except CommandTimeout as exc:
        obs.outcome = Outcome.E
        obs.detail = f"client cut at its timeout ({timeout:g}s): {exc.message}"
        obs.reply = exc.stdout or None
        return obs
    except NodeError as exc:
        obs.outcome = Outcome.E
        obs.detail = f"client: {exc}"
        return obs
    obs.elapsed_ms = res.elapsed_ms
    obs.extra["elapsed_includes_process_start"] = True
    obs.reply = res.stdout
    if judge(res.rc, res.stdout, res.stderr):
        obs.outcome = Outcome.O
        obs.detail = f"client rc=0: {res.stdout.strip()[:80]!r}"
        return obs
    found = find_errno(res.stderr + "\n" + res.stdout)
    if res.rc != 0 and found and found[0] in CONNECT_FAILURES:
        obs.outcome = Outcome.X
        obs.errno_name, obs.errno = found
        obs.detail = f"client rc={res.rc}: {(res.stderr.strip() or res.stdout.strip()).splitlines()[-1][:160]}"
        return obs
    obs.outcome = Outcome.E
    text = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()[-1][:160]
    obs.detail = f"client rc={res.rc} without a recognisable connect error: {text}"
    return obs
