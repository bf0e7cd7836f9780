"""The server side: one bound, listening socket answering "Hello: " + payload.

Stdlib only, Python >= 3.8.
"""
import contextlib
import os
import select
import socket
import threading
import time

from . import common
from .common import MAX_READ, REPLY_PREFIX
from .protocol import Event
from .sockets import SEQPACKET_MESSAGES, check_family, make_socket, os_error_fields, peer_text, sock_address

# server.phase (vsock_test cases): listening (default); bound: bound, never listens ("SOCK_STREAM
# bind only"); none: no socket at all ("SOCK_STREAM connection reset"); closed: listened, closed
# before the client comes (the port must be free again: af_vsock.c __vsock_release)
PHASE_LISTENING, PHASE_BOUND, PHASE_NONE, PHASE_CLOSED = "listening", "bound", "none", "closed"
SERVER_PHASES = (PHASE_LISTENING, PHASE_BOUND, PHASE_NONE, PHASE_CLOSED)


class Listener:
    """One bound, listening socket answering "Hello: " + payload until count or timeout.

    stream: one echo per connection; seqpacket: one echo per message, SEQPACKET_MESSAGES of them
    per connection (so the client sees whether boundaries held); dgram: one echo per datagram,
    sent back to its sender (no listen/accept: "accepted" counts datagrams).
    """

    def __init__(self, family, addr, port, service=None, count=1, timeout=30.0, lab_node=False, emit=None,
                 kind="stream", phase=PHASE_LISTENING, unprivileged=False):
        if phase not in SERVER_PHASES:
            raise ValueError("server phase {!r}: one of {}".format(phase, ", ".join(SERVER_PHASES)))
        self.family = family
        self.kind = kind
        self.phase = phase
        self.unprivileged = bool(unprivileged)
        self.addr = addr
        self.port = int(port)
        self.service = service
        self.count = int(count) if count else 0  # 0 = unlimited until timeout/stop
        self.timeout = float(timeout)
        self.lab_node = lab_node
        self.emit = emit or (lambda event: None)
        self.accepted = 0
        self.peers = []
        self.errors = []
        self.sock = None
        self.stopped = threading.Event()
        self.finished = threading.Event()
        self.thread = None
        self._wake = None  # (read fd, write fd) once listening, POSIX only
        self._wake_lock = threading.Lock()

    def open(self):
        """Bind and listen; returns the listening or bind_failed event (raises Refused).

        bind_failed names the phase: "socket" when the node refuses the socket type itself,
        "bind" or "listen" after that.
        """
        phase = "socket"
        address = None
        try:
            if self.phase == PHASE_NONE:  # vsock_test "SOCK_STREAM connection reset": nothing there
                return self.listening_event(address)
            address = sock_address(self.family, self.addr, self.port, self.service)
            if self.unprivileged:
                phase = "bind"
                failure = self.bind_unprivileged(address)
                if failure is not None:
                    event = {"event": Event.BIND_FAILED, "phase": failure.get("phase", "bind"), "socket": self.kind,
                             "unprivileged": True, "errno": failure.get("errno"),
                             "errno_name": common.errno_name(failure.get("errno")), "message": failure.get("message")}
                    return event
            else:
                self.sock = make_socket(self.family, self.addr, self.lab_node, self.kind)
                phase = "bind"
                if self.family == "tcp":
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.sock.bind(address)
            if self.kind != "dgram" and self.phase != PHASE_BOUND:  # "bound": vsock_test "SOCK_STREAM bind only"
                phase = "listen"
                self.sock.listen(8)  # type: ignore[union-attr]  # made just above when not handed in
            if self.phase == PHASE_CLOSED:  # listened, then closed before any client comes
                self.close_socket()
        except OSError as exc:
            self.close_socket()
            self.close_wake()
            event = {"event": Event.BIND_FAILED, "phase": phase, "socket": self.kind}
            event.update(os_error_fields(exc))
            return event
        return self.listening_event(address)

    def listening_event(self, address):
        """The answer to listen: listening (phase listening), or bound / none / closed as asked."""
        if not common.IS_WINDOWS and self.sock is not None and self.phase == PHASE_LISTENING:
            self._wake = os.pipe()
        event = {"event": Event.LISTENING, "family": self.family, "addr": str(self.addr), "port": self.port,
                 "socket": self.kind}
        if self.phase != PHASE_LISTENING:
            event["phase"] = self.phase
        if self.unprivileged:
            event["unprivileged"] = True
        if self.family == "tcp" and self.sock is not None:
            event["port"] = self.sock.getsockname()[1]
            self.port = event["port"]
        if self.family == "hyperv" and address is not None:
            event["service"] = address[1]
        return event

    def bind_unprivileged(self, address):
        """socket() and bind() as nobody (unprivileged.py); None when bound, else the failure."""
        from .unprivileged import bound_as_nobody

        def make():
            return make_socket(self.family, self.addr, self.lab_node, self.kind)

        check_family(self.family, self.lab_node)  # refused here, in the parent, like every other socket
        self.sock, failure = bound_as_nobody(make, address)
        if self.sock is not None and self.family == "tcp":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return failure

    def start(self):
        self.thread = threading.Thread(target=self.serve, name="listener", daemon=True)
        self.thread.start()

    def serve(self):
        deadline = time.monotonic() + self.timeout
        if self.phase != PHASE_LISTENING:  # nothing to accept: hold the bound socket (or nothing) until stopped
            self.stopped.wait(self.timeout)
            self.close_socket()
            self.finished.set()
            return
        try:
            while not self.stopped.is_set() and (not self.count or self.accepted < self.count):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                pysock = self.sock
                if pysock is None:  # closed by stop()
                    break
                if self._wake is not None:
                    # wait for a client or for stop() (which writes to the wake pipe): no polling,
                    # and shutdown() does not wake accept() on every family (vsock)
                    ready, _, _ = select.select([pysock, self._wake[0]], [], [], min(left, 5.0))
                    if self._wake[0] in ready:
                        break
                    if pysock not in ready:
                        continue
                    pysock.settimeout(min(left, 2.0))
                else:  # Windows: select() takes sockets only; short accept slices instead
                    pysock.settimeout(min(left, 0.5))
                if self.kind == "dgram":
                    self.answer_datagram(pysock)
                    continue
                try:
                    conn, peer = pysock.accept()
                except socket.timeout:
                    continue
                self.answer(conn, peer, deadline)
        except OSError as exc:
            if not self.stopped.is_set():
                self.errors.append(str(exc))
        finally:
            self.close_socket()
            self.close_wake()
            self.finished.set()

    def close_wake(self):
        with self._wake_lock:  # never write to an fd number that was closed and reused
            wake, self._wake = self._wake, None
        for fd in wake or ():
            with contextlib.suppress(OSError):
                os.close(fd)

    def answer(self, conn, peer, deadline):
        self.accepted += 1
        text = peer_text(self.family, peer)
        self.peers.append(text)
        try:
            conn.settimeout(max(0.5, min(10.0, deadline - time.monotonic())))
            received = []
            for _ in range(SEQPACKET_MESSAGES if self.kind == "seqpacket" else 1):
                data = conn.recv(MAX_READ)  # seqpacket: exactly one message, whatever its size
                if not data:
                    break
                received.append(data.decode("utf-8", "replace"))
                conn.sendall((REPLY_PREFIX + received[-1]).encode("utf-8"))
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            event = {"event": Event.ACCEPTED, "peer": text, "received": "".join(received)}
            if self.kind == "seqpacket":
                event["messages"] = received
        except OSError as exc:
            event = {"event": Event.ACCEPTED, "peer": text, "error": str(exc)}
        finally:
            conn.close()
        self.emit(event)

    def answer_datagram(self, sock):
        """One datagram in, "Hello: " + it back to its sender."""
        try:
            sock.settimeout(2.0)
            data, peer = sock.recvfrom(MAX_READ)
        except socket.timeout:
            return
        self.accepted += 1
        text = peer_text(self.family, peer)
        self.peers.append(text)
        try:
            sock.sendto((REPLY_PREFIX + data.decode("utf-8", "replace")).encode("utf-8"), peer)
            event = {"event": Event.ACCEPTED, "peer": text, "received": data.decode("utf-8", "replace")}
        except OSError as exc:
            event = {"event": Event.ACCEPTED, "peer": text, "error": str(exc)}
        self.emit(event)

    def stop(self, wait=5.0):
        self.stopped.set()
        with self._wake_lock:
            if self._wake is not None:
                with contextlib.suppress(OSError):
                    os.write(self._wake[1], b"x")
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() at once (Linux)
        if self.thread is not None:
            self.thread.join(wait)
        self.close_socket()
        return {"event": Event.STOPPED, "accepted": self.accepted, "peers": list(self.peers), "errors": list(self.errors)}

    def close_socket(self):
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

