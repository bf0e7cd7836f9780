"""Probe agents: the controller's handle on the probe running on each node.

On nested lab guests a fresh SSH connection costs ~55 s and a process start 10-50 s, so the
default agent keeps ONE resident `probe.pyz session` per node on one channel for the whole run
and every cell costs round-trips only. A reader thread dispatches the JSON-line answers to the
waiting requests by id, so a listen on one node and a connect on another (or the same node)
run concurrently. The one-shot agent starts `probe.pyz serve` / `probe.pyz connect` processes:
the only way over psexec, and selectable (mode="oneshot") where a resident process is unwanted.
"""
from __future__ import annotations

import collections
import itertools
import json
import logging
import re
import shlex
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from harness.errors import HarnessError, NodeError
from harness.probe.protocol import Event, answer_line, is_accepted, is_done, is_listening, is_ready, is_services, parse_line, request_line
from harness.secrets import scrub
from harness.node import Inventory, Node
from harness.transports import open_transport
from harness.transports.base import CommandTimeout, Process, Transport, one_line
from harness import timeouts

log = logging.getLogger("hvsock_matrix.probe")  # DEBUG: every request and answer


def _trace(node: str, direction: str, line: str) -> None:
    """One probe request (->) or answer (<-) at DEBUG, scrubbed like every text that leaves a cell."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s %s", node, direction, scrub(line))

DEFAULT_IDLE_TIMEOUT = timeouts.SESSION_IDLE  # the session exits by itself when the controller forgets it
MARGIN = timeouts.MARGIN  # a response may take this long beyond its operation's own timeout


class _SessionEnded(Exception):
    """The resident session died before answering (EOF on its channel)."""


class ProbeAgent:
    """The contract both agents share; every method returns the probe's JSON answer as a dict."""

    node: Node
    kind = "base"

    def listen(self, family: str, addr: str, port: int, service: str | None, timeout: float,
               count: int = 1, socket: str = "stream") -> dict: ...

    def connect(self, family: str, addr: str, port: int, service: str | None, payload: str,
                timeout: float, connect_timeout: float | None = None, socket: str = "stream") -> dict: ...

    def stop(self, listener: str) -> dict: ...

    def info(self) -> dict: ...

    def services(self, action: str, items: list[str] | None = None, owner: str | None = None) -> dict:
        """Hyper-V service registration on this node (probe/registry.py): register, unregister, list."""
        raise NotImplementedError

    def close(self) -> None: ...

    def lab_args(self) -> list[str]:
        return ["--lab-node"] if self.node.lab_node else []

    def describe(self, op: str, **fields: Any) -> str:
        """What this agent sends for `op` (for Observation.commands): a JSON request line."""
        return json.dumps(dict(op=op, **fields), sort_keys=True)


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
        self.command = self.transport.probe_command() + ["session", "--idle-timeout",
                                                          f"{self.idle_timeout:g}"] + self.lab_args()
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
            raise NodeError(self.node.name, one_line(f"probe session failed to start: {first or 'EOF'} {tail}"))
        if isinstance(ready.get("pid"), int):
            try:
                proc.pid = ready["pid"]  # the probe's own pid on the node (POSIX: a frozen one can still be cut)
            except AttributeError:  # a transport whose processes know their pid themselves
                pass
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
                    try:
                        old.kill()
                    except Exception:
                        pass
                self._start()
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
            raise NodeError(self.node.name, one_line(str(exc))) from None

    def _request_once(self, op: str, wait: float, fields: dict) -> dict:
        proc = self._ensure()
        rid = next(self._ids)
        try:
            line = request_line(rid, op, **fields)
        except ValueError as exc:  # a harness bug, caught before it reaches the node
            raise NodeError(self.node.name, f"bad probe request: {exc}") from None
        slot = {"event": threading.Event(), "proc": proc}
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
    def listen(self, family, addr, port, service, timeout, count=1, socket="stream"):
        return self.request("listen", timeouts.listen_answer(self.margin), family=family, addr=str(addr), port=int(port),
                            service=service, count=count, timeout=timeout, socket=socket)

    def connect(self, family, addr, port, service, payload, timeout, connect_timeout=None, socket="stream"):
        ct = timeout if connect_timeout is None else connect_timeout
        return self.request("connect", timeouts.connect_answer(timeout, ct, self.margin), family=family, addr=str(addr),
                            port=int(port), service=service, payload=payload, timeout=timeout,
                            connect_timeout=ct, socket=socket)

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
            try:
                proc.kill()
            except Exception:
                pass


_PLAIN_PAYLOAD = re.compile(r"^[A-Za-z0-9_.,:=+-]+$")


class OneShotAgent(ProbeAgent):
    """`probe.pyz serve` in the background and `probe.pyz connect` per request (psexec, or by choice)."""

    kind = "oneshot"

    def __init__(self, node: Node, transport: Transport, margin: float = MARGIN):
        self.node = node
        self.transport = transport
        self.margin = margin
        self._servers: dict[str, tuple[Process, list[dict]]] = {}
        self._next = 1  # the next listener's name: P<n>
        self._lock = threading.Lock()
        self.sent: collections.deque[str] = collections.deque(maxlen=500)

    def _cmd(self, *args: Any) -> list[str]:
        return self.transport.probe_command() + [str(a) for a in args] + self.lab_args()

    @staticmethod
    def _addr_args(family, addr, port, service, socket="stream") -> list[str]:
        out = ["--family", family, "--addr", str(addr), "--port", str(port)]
        out += ["--socket", socket] if socket != "stream" else []
        return out + (["--service", service] if service else [])

    def _listen_argv(self, family, addr, port, service, timeout, count=1, socket="stream",
                     name: str | None = None) -> list[str]:
        name = name or f"P{self._next}"
        # the server ends itself when told, never by a remote kill: where its stdin is ours (ssh, local)
        # by EOF; elsewhere (psexec) by a stop file the controller writes into the run folder (SMB)
        stop = ["--stop-on-eof"] if self.transport.spawn_keeps_stdin else ["--stop-file", self._stop_file(name)]
        return self._cmd("serve", *self._addr_args(family, addr, port, service, socket), "--count", count,
                         "--timeout", f"{float(timeout):g}", *stop)

    def _stop_file(self, name: str) -> str:
        folder = self.transport.run_folder() or ""
        sep = "\\" if "\\" in folder or self.node.os == "windows" else "/"
        return f"{folder.rstrip(sep)}{sep}stop-{name}"

    def _connect_argv(self, family, addr, port, service, payload, timeout, connect_timeout=None,
                      socket="stream") -> list[str]:
        # a payload that is not plain text for every shell travels as hex (probe cli: --payload-hex)
        text = ["--payload", payload] if _PLAIN_PAYLOAD.match(payload) else \
            ["--payload-hex", payload.encode("utf-8").hex()]
        args = self._addr_args(family, addr, port, service, socket) + text + ["--timeout", f"{float(timeout):g}"]
        if connect_timeout is not None:
            args += ["--connect-timeout", f"{float(connect_timeout):g}"]
        return self._cmd("connect", *args)

    def describe(self, op: str, **fields: Any) -> str:
        """The command line this agent runs for `op`."""
        if op == "listen":
            return shlex.join(self._listen_argv(**fields))
        if op == "connect":
            return shlex.join(self._connect_argv(**fields))
        return f"{op} {json.dumps(fields, sort_keys=True)}" if fields else op

    def listen(self, family, addr, port, service, timeout, count=1, socket="stream"):
        with self._lock:
            name = f"P{self._next}"
            self._next += 1
        argv = self._listen_argv(family, addr, port, service, timeout, count, socket, name)
        self.sent.append(" ".join(argv))
        _trace(self.node.name, "->", shlex.join(argv))
        proc = self.transport.spawn(argv)
        deadline = time.monotonic() + timeouts.oneshot_listening(self.node.access.connect_timeout, self.margin)
        while True:
            try:
                line = proc.read_line(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                proc.kill()
                raise NodeError(self.node.name, "probe serve printed no 'listening' line in time") from None
            if line is None:
                tail = proc.stderr_tail()
                proc.wait(timeouts.PROCESS_EXIT)
                raise NodeError(self.node.name, one_line(f"probe serve exited without a word: {tail}"))
            msg = parse_line(line)
            if msg is None:
                continue
            _trace(self.node.name, "<-", answer_line(msg))
            if is_listening(msg):
                with self._lock:
                    self._servers[name] = (proc, [])
                return dict(msg, listener=name)
            proc.wait(timeouts.PROCESS_EXIT)
            return msg  # bind_failed, refused, error

    def connect(self, family, addr, port, service, payload, timeout, connect_timeout=None, socket="stream"):
        argv = self._connect_argv(family, addr, port, service, payload, timeout, connect_timeout, socket)
        self.sent.append(" ".join(argv))
        _trace(self.node.name, "->", shlex.join(argv))
        budget = timeouts.oneshot_connect(timeout, connect_timeout, self.node.access.connect_timeout, self.margin)
        try:
            res = self.transport.run(argv, timeout=budget)
        except CommandTimeout as exc:
            raise NodeError(self.node.name, f"probe connect still running after {budget:g}s") from exc
        msgs = [m for m in (parse_line(line) for line in res.stdout.splitlines()) if m]
        if not msgs:
            raise NodeError(self.node.name, one_line(f"probe connect rc={res.rc} printed nothing: {res.stderr}"))
        _trace(self.node.name, "<-", answer_line(msgs[-1]))
        return msgs[-1]

    def stop(self, listener):
        with self._lock:
            entry = self._servers.pop(listener, None)
        if entry is None:
            return {"event": Event.ERROR, "message": f"no listener {listener!r}"}
        proc, _ = entry
        accepted, peers = 0, []
        if self.transport.spawn_keeps_stdin:
            proc.close_stdin()  # `serve --stop-on-eof` stops listening and prints its "done"
        elif proc.wait(0) is None:
            try:  # `serve --stop-file`: the file, written over the file channel, stops it
                self.transport.put_bytes(self._stop_file(listener), b"stop\n")
            except NodeError:
                pass
        # collect what it already printed (accepted events), then end it
        while True:
            try:
                line = proc.read_line(timeouts.STOP_DRAIN)
            except TimeoutError:
                break
            if line is None:
                break
            msg = parse_line(line) or {}
            if is_accepted(msg):
                accepted += 1
                peers.append(msg.get("peer"))
            if is_done(msg):
                break
        if proc.wait(timeouts.PROCESS_EXIT) is None:  # it ends itself; a kill only if it did not
            proc.kill()
        return {"event": Event.STOPPED, "accepted": accepted, "peers": peers}

    def services(self, action, items=None, owner=None):
        """One `probe services` run per command line that fits the node (a run's ports are a few ranges;
        only thousands of scattered explicit GUIDs take more than one), the answers merged."""
        items = list(items or [])
        limit = self.transport.command_line_limit() or 32000
        merged: dict = {}
        while True:
            part = items
            while True:
                argv = self._cmd("services", action, *part, *(["--owner", owner] if owner else []))
                if len(part) <= 1 or len(subprocess.list2cmdline(argv)) <= limit:
                    break
                part = part[: len(part) // 2]
            answer = self._run_one(argv, timeouts.REGISTRATION + self.margin, "services")
            if not is_services(answer):
                return answer
            for key, value in answer.items():
                merged[key] = merged.get(key, []) + value if isinstance(value, list) else value
            items = items[len(part):]
            if not items:
                return merged

    def _run_one(self, argv: list[str], timeout: float, what: str) -> dict:
        _trace(self.node.name, "->", shlex.join(argv))
        res = self.transport.run(argv, timeout=timeout)
        msgs = [m for m in (parse_line(line) for line in res.stdout.splitlines()) if m]
        if not msgs:
            raise NodeError(self.node.name, one_line(f"probe {what} rc={res.rc}: {res.stderr}"))
        _trace(self.node.name, "<-", answer_line(msgs[-1]))
        return msgs[-1]

    def info(self):
        argv = self._cmd("info")
        _trace(self.node.name, "->", shlex.join(argv))
        res = self.transport.run(argv, timeout=timeouts.oneshot_info(self.margin))
        msgs = [m for m in (parse_line(line) for line in res.stdout.splitlines()) if m]
        if not msgs:
            raise NodeError(self.node.name, one_line(f"probe info rc={res.rc}: {res.stderr}"))
        _trace(self.node.name, "<-", answer_line(msgs[-1]))
        return msgs[-1]

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for proc, _ in servers:
            try:
                proc.kill()
            except Exception:
                pass


class AgentPool:
    """One agent per node for the whole run; close() ends every session and connection.

    mode: "session" (default; psexec nodes still get one-shot agents) or "oneshot" (every node).
    """

    def __init__(self, inventory: Inventory, mode: str = "session",
                 transport_factory: Callable[[Node, Inventory], Transport] = open_transport,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, margin: float = MARGIN):
        if mode not in ("session", "oneshot"):
            raise ValueError(f"agent mode {mode!r} (expected session or oneshot)")
        self.inventory = inventory
        self.mode = mode
        self.transport_factory = transport_factory
        self.idle_timeout = idle_timeout
        self.margin = margin
        self._agents: dict[str, ProbeAgent] = {}
        self._transports: dict[str, Transport] = {}
        self._lock = threading.Lock()

    def transport(self, node_name: str) -> Transport:
        with self._lock:
            t = self._transports.get(node_name)
            if t is None:
                t = self.transport_factory(self.inventory.node(node_name), self.inventory)
                self._transports[node_name] = t
            return t

    def agent(self, node_name: str) -> ProbeAgent:
        if node_name not in self.inventory.nodes:
            raise NodeError(node_name, "not in the inventory")
        with self._lock:
            agent = self._agents.get(node_name)
        if agent is not None:
            return agent
        node = self.inventory.node(node_name)
        transport = self.transport(node_name)
        if self.mode == "oneshot" or node.access.kind == "psexec":
            agent = OneShotAgent(node, transport, self.margin)
        else:
            agent = SessionAgent(node, transport, self.idle_timeout, self.margin)
        with self._lock:
            return self._agents.setdefault(node_name, agent)

    def facts(self, names) -> dict[str, dict]:
        """Every named node's `info`, asked in parallel ({"error": ...} for a node that failed).

        Started one by one, a lab's nested guests would each cost their ~2 min start (SSH ~55 s
        and a Python start) in turn; in parallel a run pays it once.
        """
        names = list(names)

        def info(name: str) -> tuple[str, dict]:
            try:
                return name, self.agent(name).info()
            except HarnessError as err:  # the node's cells say so themselves, as E
                return name, {"error": str(err)}

        if not names:
            return {}
        with ThreadPoolExecutor(len(names)) as ex:
            return dict(ex.map(info, names))

    def close(self) -> None:
        with self._lock:
            agents, self._agents = list(self._agents.values()), {}
            transports, self._transports = list(self._transports.values()), {}
        for agent in agents:
            try:
                agent.close()
            except Exception:
                pass
        # jumped nodes first, so a jump host's connection outlives the tunnels through it
        transports.sort(key=lambda t: t.node.access.jump is None)
        from harness.transports import close_inventory, forget
        for t in transports:
            try:
                t.close()
            finally:
                forget(t)
        if self.transport_factory is open_transport:
            close_inventory(self.inventory)  # jump hosts opened on the way

    def __enter__(self) -> "AgentPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


