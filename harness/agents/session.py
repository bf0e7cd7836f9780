"""The session agent: ONE resident `probe.pyz session` per node on one channel, requests multiplexed by id.

On nested lab guests a fresh SSH connection costs ~55 s and a process start 10-50 s, so the whole
run costs one process start per node; every cell is then round-trips only. A reader thread
dispatches the JSON-line answers to the waiting requests by id, so a listen on one node and a
connect on another (or the same node) run concurrently.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import threading
from typing import Any

from harness import timeouts
from harness.agents.base import DEFAULT_IDLE_TIMEOUT, MARGIN, ProbeAgent, _SessionEnded, _trace, given_options
from harness.errors import NodeError
from harness.node import Node
from harness.probe.protocol import answer_line, is_ready, parse_line, request_line
from harness.transports.base import Process, Transport


class SessionAgent(ProbeAgent):
    """A resident `probe.pyz session` on one channel; requests multiplexed by id."""

    kind = "session"

    def __init__(self, node: Node, transport: Transport, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 margin: float = MARGIN):
        self.node = node
        self.transport = transport
        self.idle_timeout = idle_timeout
        self.margin = margin
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, dict] = {}
        self._proc: Process | None = None
        self._reader: threading.Thread | None = None
        self._dead: str | None = None
        self._restarts = 0
        self.events: collections.deque[dict] = collections.deque(maxlen=200)  # unsolicited (accepted, ...)
        self.starts = 0
        self.sent: collections.deque[str] = collections.deque(maxlen=500)  # recent request lines, for debugging
        self.command: list[str] = []

    # -- process ------------------------------------------------------------------------
    def _start(self) -> None:
        self.command = [*self.transport.probe_command(), "session", "--idle-timeout", f"{self.idle_timeout:g}", *self.lab_args()]
        proc = self.transport.spawn(self.command)
        try:
            # a Python start on a nested TCG guest reading its stdlib over 9p: tens of seconds
            # idle, minutes when the lab is busy -- sized from the inventory's connect_timeout
            first = proc.read_line(timeouts.session_first_line(self.node.access.connect_timeout))
        except TimeoutError:
            proc.kill()
            raise NodeError(self.node.name, "probe session did not start (no 'ready' line)") from None
        ready = parse_line(first)
        if ready is None or not is_ready(ready):
            tail = proc.stderr_tail()
            proc.kill()
            raise NodeError(self.node.name, f"probe session failed to start: {first or 'EOF'} {tail}")
        if isinstance(ready.get("pid"), int):
            # the probe's own pid on the node (POSIX: a frozen one can still be cut); a transport whose
            # processes know their pid themselves keeps its own
            with contextlib.suppress(AttributeError):
                proc.pid = ready["pid"]
        self._proc = proc
        self._dead = None
        self.starts += 1
        self._reader = threading.Thread(target=self._read, args=(proc,), name=f"agent-{self.node.name}",
                                        daemon=True)
        self._reader.start()

    def _ensure(self) -> Process:
        with self._lock:
            if self._proc is None or self._dead is not None:
                if self._proc is not None:  # it died: one fresh start (the transport rebuilds the connection)
                    old, self._proc = self._proc, None
                    with contextlib.suppress(Exception):
                        old.kill()
                self._start()
            assert self._proc is not None  # _start sets it or raises
            return self._proc

    def _read(self, proc: Process) -> None:
        reason = "probe session ended (EOF)"
        try:
            while True:
                line = proc.read_line(None)
                if line is None:
                    tail = proc.stderr_tail()
                    if tail:
                        reason += ": " + tail.splitlines()[-1]
                    break
                msg = parse_line(line)
                if msg is None:
                    continue
                rid = msg.get("id")
                with self._lock:
                    slot = self._pending.get(rid) if rid is not None else None
                if slot is not None:
                    slot["answer"] = msg
                    slot["event"].set()
                else:
                    self.events.append(msg)
        except Exception as exc:  # never let the reader die silently
            reason = f"probe session reader failed: {exc}"
        with self._lock:
            if self._proc is proc:
                self._dead = reason
            for slot in self._pending.values():
                if slot.get("proc") is proc:  # a restarted session's requests are not this one's
                    slot.setdefault("error", reason)
                    slot["event"].set()

    def request(self, op: str, wait: float, **fields: Any) -> dict:
        """Send one request; its answer, or NodeError if the node or the session failed.

        A session found dead when a listen/info is sent (it crashed or was killed between cells)
        is restarted and the request sent once more: nothing of the dead session mattered to it.
        A connect is never repeated: a session dying under a connect is the cell's E.
        """
        try:
            return self._request_once(op, wait, fields)
        except _SessionEnded:
            if op not in ("listen", "info"):
                raise NodeError(self.node.name, f"probe session ended during {op}") from None
        try:
            return self._request_once(op, wait, fields)
        except _SessionEnded as exc:
            raise NodeError(self.node.name, str(exc)) from None

    def _request_once(self, op: str, wait: float, fields: dict) -> dict:
        proc = self._ensure()
        rid = next(self._ids)
        try:
            line = request_line(rid, op, **fields)
        except ValueError as exc:  # a harness bug, caught before it reaches the node
            raise NodeError(self.node.name, f"bad probe request: {exc}") from None
        slot: dict[str, Any] = {"event": threading.Event(), "proc": proc}
        with self._lock:
            if self._dead is not None and self._proc is proc:  # died between _ensure and now
                raise _SessionEnded(self._dead)
            self._pending[rid] = slot
        self.sent.append(line)
        _trace(self.node.name, "->", line)
        try:
            try:
                proc.write_line(line)
            except (OSError, BrokenPipeError) as exc:
                with self._lock:
                    self._dead = self._dead or str(exc)
                raise _SessionEnded(f"probe session gone: {exc}") from None
            if not slot["event"].wait(wait):
                with self._lock:  # unresponsive: the next request starts a fresh session (the old one is killed)
                    if self._proc is proc and self._dead is None:
                        self._dead = f"unresponsive: no answer to {op} within {wait:g}s"
                raise NodeError(self.node.name, f"no answer to {op} within {wait:g}s")
            if "answer" not in slot:
                raise _SessionEnded(slot.get("error", "probe session ended"))
            _trace(self.node.name, "<-", answer_line(slot["answer"]))
            return slot["answer"]
        finally:
            with self._lock:
                self._pending.pop(rid, None)

    # -- the contract -----------------------------------------------------------------------
    def listen(self, family, addr, port, service, timeout, count=1, socket="stream", **options):
        return self.request("listen", timeouts.listen_answer(self.margin), family=family, addr=str(addr), port=int(port),
                            service=service, count=count, timeout=timeout, socket=socket, **given_options(options))

    def connect(self, family, addr, port, service, payload, timeout, connect_timeout=None, socket="stream",
                **options):
        ct = timeout if connect_timeout is None else connect_timeout
        # retry / second-cid connect twice: the first may wait its own FIRST_CONNECT_TIMEOUT
        first = 3.0 if options.get("phase") in ("retry", "second-cid") else 0.0
        return self.request("connect", timeouts.connect_answer(timeout, ct + first, self.margin), family=family,
                            addr=str(addr), port=int(port), service=service, payload=payload, timeout=timeout,
                            connect_timeout=ct, socket=socket, **given_options(options))

    def stop(self, listener):
        return self.request("stop", timeouts.stop_answer(self.margin), listener=listener)

    def info(self):
        return self.request("info", timeouts.info_answer(self.margin))

    def services(self, action, items=None, owner=None):
        return self.request("services", timeouts.REGISTRATION, action=action, items=list(items or []), owner=owner)

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.write_line(request_line(0, "bye"))
            proc.close_stdin()
            if proc.wait(timeouts.PROCESS_EXIT) is None:
                proc.kill()
        except Exception:
            with contextlib.suppress(Exception):
                proc.kill()
