"""Hybrid vsock, the host side: AF_UNIX through the backend's Unix socket per guest.

Firecracker, Cloud Hypervisor and vhost-user backends (rust-vmm's vhost-device-vsock) give a guest
an ordinary virtio-vsock device but no AF_VSOCK endpoint on the host. Instead each guest has a
Unix socket, its "uds" (upstream vhost-device-vsock 0.3.0, read for this file):
- host -> guest port P: connect to <uds>, write "CONNECT P\\n"; the backend answers "OK <host port>\\n"
  once the guest accepted (vhu_vsock_thread.rs read_local_stream_port; vsock_conn.rs send_pkt,
  VSOCK_OP_RESPONSE), or closes the connection when the guest refused (thread_backend.rs send_pkt,
  VSOCK_OP_RST drops the stream) or the line was not a CONNECT (the stream is dropped unanswered);
  after OK the stream is the guest's.
- guest -> host port P: the backend connects to "<uds>_P" (thread_backend.rs handle_new_guest_conn),
  so a host listener binds that path. With no one there the backend sends nothing back (enq_rst is
  a TODO in 0.3.0): the guest's connect times out.

The hybrid protocol has no errno of its own. The probe records: a refused UDS connect() with its
own errno (ENOENT: no backend, ECONNREFUSED, EPROTOTYPE for a non-stream socket); the connection
closed before an answer as ECONNRESET (what a kernel host gets from the guest's RST); no answer
within the connect timeout as ETIMEDOUT; any other answer as EPROTO. The answer itself is kept.

Safety: only on lab nodes, and only for paths in the lab's hybrid run folder (l1's own /run tmpfs,
harness/lab/backend.py HYBRID_RUN_DIR), never a real VMM's socket elsewhere on a machine.
Stdlib only, Python >= 3.8.
"""
import contextlib
import errno as _errno
import os
import select
import socket
import time

from .common import errno_name
from .hybrid_paths import check_paths, listen_path, uds_paths
from .listener import Listener
from .protocol import Event
from .sockets import os_error_fields, socket_type

ANSWER_MAX = 256  # "OK 4294967295\n" is 14 bytes; a longer line is not an answer


class HybridRefused(Exception):
    """The backend did not answer CONNECT with OK: errno (assigned by the probe) and its answer."""

    def __init__(self, number, answer, message):
        Exception.__init__(self, message)
        self.errno = number
        self.answer = answer


def handshake(sock, port, timeout):
    """CONNECT <port> through a connected UDS; returns the backend's OK line, or raises HybridRefused."""
    deadline = time.monotonic() + timeout
    port = int(port)
    sock.settimeout(max(0.001, timeout))
    try:
        sock.sendall(f"CONNECT {port}\n".encode("ascii"))
    except OSError as exc:  # e.g. EPIPE: a backend not serving this guest accepts and closes at once
        raise HybridRefused(exc.errno, b"", f"CONNECT {port} could not be sent: {exc}") from None
    answer = b""
    while not answer.endswith(b"\n") and len(answer) < ANSWER_MAX:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HybridRefused(_errno.ETIMEDOUT, answer, f"no answer to CONNECT {port} within {timeout:g}s")
        sock.settimeout(left)
        try:
            chunk = sock.recv(1)  # one byte at a time: what follows OK is the guest's
        except socket.timeout:
            continue
        except OSError as exc:
            raise HybridRefused(exc.errno, answer, f"CONNECT {port}: {exc}") from None
        if not chunk:
            raise HybridRefused(_errno.ECONNRESET, answer, f"the backend closed the connection without answering "
                                f"CONNECT {port} (the guest refused it, or the request was not understood)")
        answer += chunk
    words = answer.decode("utf-8", "replace").split()
    if len(words) == 2 and words[0] == "OK" and words[1].isdigit():
        return answer.decode("ascii").strip()
    raise HybridRefused(_errno.EPROTO, answer, f"CONNECT {port} answered {answer[:80]!r}, not 'OK <port>'")


def refused_fields(exc):
    """The result fields of a HybridRefused: X at phase connect, its errno, the backend's answer."""
    return {"outcome": "X", "phase": "connect", "errno": exc.errno, "errno_name": errno_name(exc.errno),
            "message": str(exc), "answer": exc.answer.decode("utf-8", "replace")}


class HybridListener(Listener):
    """A host program listening for hybrid guests: one AF_UNIX socket on <uds>_<port> per guest UDS.

    `addr` holds one UDS (the guest that will connect) or several joined by ',' (a host bind of
    `any`/`host`/`self`: every hybrid guest of the host). The paths it bound are removed when it
    closes; a path that already exists is left alone (bind's EADDRINUSE is the measurement).
    """

    def __init__(self, *args, **kwargs):
        Listener.__init__(self, *args, **kwargs)
        self.socks = []
        self.bound = []

    def open(self):
        paths = [listen_path(uds, self.port) for uds in uds_paths(self.addr)]
        check_paths(paths, self.lab_node)
        phase = "socket"
        try:
            for path in paths:
                phase = "socket"
                sock = socket.socket(socket.AF_UNIX, socket_type(self.kind))
                self.socks.append(sock)
                phase = "bind"
                sock.bind(path)
                self.bound.append(path)
                if self.kind != "dgram":
                    phase = "listen"
                    sock.listen(8)
        except OSError as exc:
            self.close_socket()
            event = {"event": Event.BIND_FAILED, "phase": phase, "socket": self.kind}
            event.update(os_error_fields(exc))
            return event
        self.sock = self.socks[0]
        self._wake = os.pipe()
        return {"event": Event.LISTENING, "family": self.family, "addr": str(self.addr), "port": self.port,
                "socket": self.kind, "paths": list(self.bound)}

    def serve(self):
        deadline = time.monotonic() + self.timeout
        names = dict((s.fileno(), os.path.basename(p)) for s, p in zip(self.socks, self.bound))
        try:
            while not self.stopped.is_set() and (not self.count or self.accepted < self.count):
                left = deadline - time.monotonic()
                if left <= 0 or self._wake is None:
                    break
                ready, _, _ = select.select([*self.socks, self._wake[0]], [], [], min(left, 5.0))
                if self._wake[0] in ready:
                    break
                for sock in ready:
                    sock.settimeout(min(left, 2.0))
                    if self.kind == "dgram":
                        self.answer_datagram(sock)
                        continue
                    try:
                        conn, _ = sock.accept()
                    except socket.timeout:
                        continue
                    # an AF_UNIX peer has no name: the path it came in on tells which guest it is
                    self.answer(conn, names.get(sock.fileno(), ""), deadline)
        except OSError as exc:
            if not self.stopped.is_set():
                self.errors.append(str(exc))
        finally:
            self.close_socket()
            self.close_wake()
            self.finished.set()

    def close_socket(self):
        socks, self.socks, self.sock = self.socks, [], None
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
        bound, self.bound = self.bound, []
        for path in bound:
            with contextlib.suppress(OSError):
                os.unlink(path)


def make_listener(family, *args, **kwargs):
    """The listener of a family: for the host side of hybrid vsock this module's, else the plain Listener."""
    if family == "hybrid":
        return HybridListener(family, *args, **kwargs)
    return Listener(family, *args, **kwargs)
