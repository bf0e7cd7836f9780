"""Session mode: one resident process per node serving JSON-line requests concurrently.

On nested lab guests a process start costs 10-50 s, a request a round-trip. Stdlib only, Python >= 3.8.
"""
import contextlib
import json
import os
import sys
import threading
import time

from . import common
from .client import connect_once
from .common import Refused, lab_allowed
from .facts import info_facts
from .hybrid import make_listener
from .protocol import Event, Op, answer_line, is_listening, request_problem
from .registry import services_answer
from .sockets import load_libc


class Session:
    """Resident JSON-lines server: requests run concurrently, answers carry the request id."""

    def __init__(self, out, idle_timeout=900.0, lab_node=False):
        self.out = out
        self.idle_timeout = float(idle_timeout)
        self.lab_node = lab_node
        self.lock = threading.Lock()
        self.listeners = {}
        self.next_listener = 0
        self.last_activity = time.monotonic()
        self.busy = 0
        self.closing = threading.Event()

    def write(self, obj):
        line = answer_line(obj) + "\n"
        with self.lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (OSError, ValueError):
                self.closing.set()

    def touch(self, delta=0):
        with self.lock:
            self.last_activity = time.monotonic()
            self.busy += delta

    def handle_line(self, line):
        line = line.strip()
        if not line:
            return
        self.touch()
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as exc:
            self.write({"id": None, "event": Event.ERROR, "message": f"malformed request: {exc}"})
            return
        if req.get("op") == Op.BYE:
            self.write({"id": req.get("id"), "event": Event.BYE})
            self.closing.set()
            return
        t = threading.Thread(target=self.run_request, args=(req,), daemon=True)
        t.start()

    def run_request(self, req):
        rid = req.get("id")
        self.touch(+1)
        try:
            resp = self.dispatch(req)
        except Refused as exc:
            resp = {"event": Event.REFUSED, "message": str(exc)}
        except Exception as exc:  # one answer per request, whatever went wrong
            resp = {"event": Event.ERROR, "message": f"{exc.__class__.__name__}: {exc}"}
        finally:
            self.touch(-1)
        resp["id"] = rid
        self.write(resp)

    def dispatch(self, req):
        op = req.get("op")
        problem = request_problem(req)
        if problem:
            return {"event": Event.ERROR, "message": problem}
        if op == Op.LISTEN:
            return self.op_listen(req)
        if op == Op.CONNECT:
            return connect_once(req["family"], req["addr"], req["port"], req.get("service"),
                                req.get("payload", "World!"), req.get("timeout", 10.0),
                                req.get("connect_timeout"), self.lab_node, req.get("socket") or "stream",
                                req.get("phase") or "connect", req.get("first_addr"), req.get("first_port"))
        if op == Op.STOP:
            with self.lock:
                listener = self.listeners.pop(req.get("listener"), None)
            if listener is None:
                return {"event": Event.ERROR, "message": "no listener {!r}".format(req.get("listener"))}
            return listener.stop()
        if op == Op.INFO:
            return info_facts(self.lab_node)
        if op == Op.SERVICES:
            return services_answer(req.get("action"), req.get("items") or [], req.get("owner"))
        if op == Op.PING:
            return {"event": Event.PONG, "listeners": sorted(self.listeners)}
        return {"event": Event.ERROR, "message": f"unknown op {op!r}"}

    def op_listen(self, req):
        with self.lock:
            self.next_listener += 1
            name = f"L{self.next_listener:d}"
        listener = make_listener(req["family"], req["addr"], req["port"], req.get("service"), req.get("count", 1),
                            req.get("timeout", 30.0), self.lab_node,
                            emit=lambda event: self.write(dict(event, listener=name)),
                            kind=req.get("socket") or "stream", phase=req.get("phase") or "listening",
                            unprivileged=bool(req.get("unprivileged")))
        event = listener.open()
        if is_listening(event):
            event["listener"] = name
            with self.lock:
                self.listeners[name] = listener
            listener.start()
        return event

    def idle_watch(self):
        while not self.closing.wait(1.0):
            with self.lock:
                idle = time.monotonic() - self.last_activity
                busy = self.busy
            if busy == 0 and idle > self.idle_timeout:
                self.write({"id": None, "event": Event.IDLE_TIMEOUT, "idle_s": round(idle, 1)})
                self.closing.set()

    def close_all(self):
        with self.lock:
            listeners = list(self.listeners.values())
            self.listeners.clear()
        for listener in listeners:
            listener.stop(wait=1.0)


def read_lines(stream, session):
    for line in iter(stream.readline, ""):
        session.handle_line(line)
        if session.closing.is_set():
            return
    session.closing.set()


def run_session(args):
    session = Session(sys.stdout, args.idle_timeout, args.lab_node)
    if not common.IS_WINDOWS:
        with contextlib.suppress(OSError):  # before "ready": the first connect must not pay for loading ctypes
            load_libc()
    session.write({"id": None, "event": Event.READY, "pid": os.getpid(), "python": ".".join(str(n) for n in sys.version_info[:3]),
                   "lab_node": lab_allowed(args.lab_node)})
    reader = threading.Thread(target=read_lines, args=(sys.stdin, session), daemon=True)
    reader.start()
    watcher = threading.Thread(target=session.idle_watch, daemon=True)
    watcher.start()
    session.closing.wait()
    session.close_all()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    return 0
