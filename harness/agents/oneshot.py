"""The one-shot agent: `probe.pyz serve` in the background and `probe.pyz connect` per request.

The only way over psexec (PAExec has no resident channel), and selectable (mode="oneshot") where a
resident process is unwanted. A server is never killed remotely: it stops on stdin EOF (ssh, local)
or on a stop file written into the run folder (psexec), and only a server that did not end is killed.
"""
from __future__ import annotations

import collections
import contextlib
import json
import re
import shlex
import subprocess
import threading
import time
from typing import Any

from harness import timeouts
from harness.agents.base import MARGIN, ProbeAgent, _trace, option_args
from harness.errors import NodeError
from harness.node import Node
from harness.probe.protocol import (
    Event,
    answer_line,
    is_accepted,
    is_done,
    is_listening,
    is_services,
    parse_line,
)
from harness.transports.base import CommandTimeout, Process, Transport

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
                     name: str | None = None, **options) -> list[str]:
        name = name or f"P{self._next}"
        # the server ends itself when told, never by a remote kill: where its stdin is ours (ssh, local)
        # by EOF; elsewhere (psexec) by a stop file the controller writes into the run folder (SMB)
        stop = ["--stop-on-eof"] if self.transport.spawn_keeps_stdin else ["--stop-file", self._stop_file(name)]
        return self._cmd("serve", *self._addr_args(family, addr, port, service, socket), "--count", count,
                         "--timeout", f"{float(timeout):g}", *stop, *option_args(options))

    def _stop_file(self, name: str) -> str:
        folder = self.transport.run_folder() or ""
        sep = "\\" if "\\" in folder or self.node.os == "windows" else "/"
        return f"{folder.rstrip(sep)}{sep}stop-{name}"

    def _connect_argv(self, family, addr, port, service, payload, timeout, connect_timeout=None,
                      socket="stream", **options) -> list[str]:
        # a payload that is not plain text for every shell travels as hex (probe cli: --payload-hex)
        text = ["--payload", payload] if _PLAIN_PAYLOAD.match(payload) else \
            ["--payload-hex", payload.encode("utf-8").hex()]
        args = self._addr_args(family, addr, port, service, socket) + text + ["--timeout", f"{float(timeout):g}"]
        if connect_timeout is not None:
            args += ["--connect-timeout", f"{float(connect_timeout):g}"]
        return self._cmd("connect", *args, *option_args(options))

    def describe(self, op: str, **fields: Any) -> str:
        """The command line this agent runs for `op`."""
        if op == "listen":
            return shlex.join(self._listen_argv(**fields))
        if op == "connect":
            return shlex.join(self._connect_argv(**fields))
        return f"{op} {json.dumps(fields, sort_keys=True)}" if fields else op

    def listen(self, family, addr, port, service, timeout, count=1, socket="stream", **options):
        with self._lock:
            name = f"P{self._next}"
            self._next += 1
        argv = self._listen_argv(family, addr, port, service, timeout, count, socket, name, **options)
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
                raise NodeError(self.node.name, f"probe serve exited without a word: {tail}")
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

    def connect(self, family, addr, port, service, payload, timeout, connect_timeout=None, socket="stream",
                **options):
        argv = self._connect_argv(family, addr, port, service, payload, timeout, connect_timeout, socket, **options)
        self.sent.append(" ".join(argv))
        _trace(self.node.name, "->", shlex.join(argv))
        budget = timeouts.oneshot_connect(timeout, connect_timeout, self.node.access.connect_timeout, self.margin)
        try:
            res = self.transport.run(argv, timeout=budget)
        except CommandTimeout as exc:
            raise NodeError(self.node.name, f"probe connect still running after {budget:g}s") from exc
        msgs = [m for m in (parse_line(line) for line in res.stdout.splitlines()) if m]
        if not msgs:
            raise NodeError(self.node.name, f"probe connect rc={res.rc} printed nothing: {res.stderr}")
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
            with contextlib.suppress(NodeError):  # `serve --stop-file`: the file, written over the file channel
                self.transport.put_bytes(self._stop_file(listener), b"stop\n")
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
            raise NodeError(self.node.name, f"probe {what} rc={res.rc}: {res.stderr}")
        _trace(self.node.name, "<-", answer_line(msgs[-1]))
        return msgs[-1]

    def info(self):
        argv = self._cmd("info")
        _trace(self.node.name, "->", shlex.join(argv))
        res = self.transport.run(argv, timeout=timeouts.oneshot_info(self.margin))
        msgs = [m for m in (parse_line(line) for line in res.stdout.splitlines()) if m]
        if not msgs:
            raise NodeError(self.node.name, f"probe info rc={res.rc}: {res.stderr}")
        _trace(self.node.name, "<-", answer_line(msgs[-1]))
        return msgs[-1]

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for proc, _ in servers:
            with contextlib.suppress(Exception):
                proc.kill()
