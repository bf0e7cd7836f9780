#!/usr/bin/env python3
"""hvsock-matrix probe: the one file copied to every node (stdlib only, Python >= 3.8).

It plays both sides of the documents' program -- a server that answers "Hello: " + payload and
a client that sends a payload and checks the echo -- over AF_HYPERV, AF_VSOCK or TCP, and says
what happened as JSON lines so the controller never has to parse prose.

    probe.py serve   --family F --addr A --port P [--service GUID] [--socket TYPE] [--count N] [--timeout T]
                     [--lab-node]
    probe.py connect --family F --addr A --port P [--service GUID] [--socket TYPE] --payload S [--timeout T]
                     [--connect-timeout C] [--lab-node]
    probe.py info    [--lab-node]
    probe.py session [--idle-timeout T] [--lab-node]

TYPE is stream (default), seqpacket or dgram. A type the node refuses is answered with its errno
and the phase (socket, bind, listen, connect, send, reply) where it was refused.

`session` keeps one process per node alive for a whole run and serves JSON-line requests
concurrently: on nested lab guests a process start costs 10-50 s, a request a round-trip.

Safety: AF_VSOCK sockets and the /dev/vsock ioctl are refused (event "refused", exit 3) unless
this is a lab node: --lab-node, HVSOCK_MATRIX_LAB_NODE=1, or /run/hvsock-matrix-lab-guest exists.
"""
import errno as _errno
import json
import os
import select
import socket
import struct
import sys
import threading
import time

# argparse, platform, subprocess and uuid are imported where used: on nested lab guests every module is
# read over 9p, and the resident session should start with as few as possible.

AF_VSOCK = getattr(socket, "AF_VSOCK", 40)
SO_VM_SOCKETS_CONNECT_TIMEOUT = 6  # level AF_VSOCK; value: struct timeval
IOCTL_VM_SOCKETS_GET_LOCAL_CID = 0x7B9  # _IO(7, 0xb9) on /dev/vsock
VMADDR_CID_ANY = 0xFFFFFFFF

AF_HYPERV = 34
HV_PROTOCOL_RAW = 1
HVSOCKET_CONNECT_TIMEOUT = 1  # level HV_PROTOCOL_RAW; value: u32 milliseconds
HVSOCKET_CONNECT_TIMEOUT_MAX = 300000  # hvsocket.h

LAB_MARKER = "/run/hvsock-matrix-lab-guest"
LAB_ENV = "HVSOCK_MATRIX_LAB_NODE"
EXIT_REFUSED = 3
REPLY_PREFIX = "Hello: "
MAX_READ = 1024

WSA_NAMES = {
    10013: "WSAEACCES",
    10022: "WSAEINVAL",
    10041: "WSAEPROTOTYPE",
    10043: "WSAEPROTONOSUPPORT",
    10044: "WSAESOCKTNOSUPPORT",
    10045: "WSAEOPNOTSUPP",
    10047: "WSAEAFNOSUPPORT",
    10048: "WSAEADDRINUSE",
    10049: "WSAEADDRNOTAVAIL",
    10051: "WSAENETUNREACH",
    10054: "WSAECONNRESET",
    10060: "WSAETIMEDOUT",
    10061: "WSAECONNREFUSED",
    10065: "WSAEHOSTUNREACH",
}
IS_WINDOWS = os.name == "nt"

# socket types by name; SOCK_SEQPACKET is missing from some builds, 5 is its value on Linux and Winsock
SOCKET_TYPES = {"stream": socket.SOCK_STREAM, "seqpacket": getattr(socket, "SOCK_SEQPACKET", 5),
                "dgram": socket.SOCK_DGRAM}
SEQPACKET_MESSAGES = 2  # a seqpacket client sends this many messages; each must come back on its own


class Refused(Exception):
    """AF_VSOCK asked for on a machine that is not a lab node."""


def errno_name(number):
    """Symbolic name of an errno (Windows sockets: the WSA name)."""
    if number is None:
        return None
    if number in WSA_NAMES and (IS_WINDOWS or number >= 10000):
        return WSA_NAMES[number]
    return _errno.errorcode.get(number) or WSA_NAMES.get(number) or "ERRNO_%d" % number


def timeout_errno():
    return 10060 if IS_WINDOWS else _errno.ETIMEDOUT


def lab_allowed(flag=False):
    """True only on a lab node, where AF_VSOCK belongs to the project."""
    return bool(flag) or os.environ.get(LAB_ENV) == "1" or os.path.exists(LAB_MARKER)


def now_ms(start):
    return round((time.monotonic() - start) * 1000.0, 3)


# ---------------------------------------------------------------- Hyper-V addresses

def service_for_port(port):
    """The Linux-compatible service GUID: the vsock template with the port in Data1."""
    return "%08x-facb-11e6-bd58-64006a7986d3" % int(port)


def windows_python_problem():
    """Why this Python cannot run Hyper-V cells on Windows, or None.

    AF_HYPERV is native from CPython 3.12 (Modules/socketmodule.c: HAVE_AF_HYPERV in getsockaddrarg,
    getsockaddrlen and makesockaddr). Before 3.12 an AF_HYPERV socket wrapped by socket.socket(fileno=)
    dies in accept() with "getsockaddrlen: bad family", so a server would print `listening` and never
    answer: every cell would read X instead of E. The probe refuses instead.
    """
    if IS_WINDOWS and not hasattr(socket, "AF_HYPERV"):
        return ("Python %d.%d.%d has no socket.AF_HYPERV: the probe needs Python >= 3.12 on Windows nodes "
                "(winget install Python.Python.3.12, or set access.python)" % tuple(sys.version_info[:3]))
    return None


def hyperv_available():
    """True when Winsock has a provider for AF_HYPERV/HV_PROTOCOL_RAW (the "Hyper-V RAW" catalog entry).

    Asked the way Winsock answers it: socket() fails with WSAEAFNOSUPPORT (10047) when the catalog has no
    provider for the family. Only on Windows (elsewhere family 34 means something else, or nothing).
    """
    if not IS_WINDOWS or not hasattr(socket, "AF_HYPERV"):
        return False
    try:
        sock = socket.socket(socket.AF_HYPERV, socket.SOCK_STREAM, HV_PROTOCOL_RAW)
    except OSError:
        return False
    sock.close()
    return True


# ---------------------------------------------------------------- sockets per family

def check_family(family, lab_node):
    if family not in ("tcp", "vsock", "hyperv"):
        raise ValueError("unknown family %r (expected tcp, vsock or hyperv)" % (family,))
    if family == "vsock" and not lab_allowed(lab_node):
        raise Refused("AF_VSOCK refused: not a lab node (pass --lab-node, set %s=1, or create %s on a lab guest)"
                      % (LAB_ENV, LAB_MARKER))


def socket_type(name):
    """The SOCK_* number of a type name (ValueError names the known ones)."""
    if name not in SOCKET_TYPES:
        raise ValueError("unknown socket type %r (expected %s)" % (name, ", ".join(SOCKET_TYPES)))
    return SOCKET_TYPES[name]


def make_socket(family, addr, lab_node, kind="stream"):
    """A fresh socket of `family` and type `kind`; vsock only on lab nodes.

    Whatever the kernel (or Winsock) answers to the type is left to it: a refused type raises
    its own OSError here, which the callers record as the "socket" phase.
    """
    check_family(family, lab_node)
    sock_type = socket_type(kind)
    if family == "tcp":
        return socket.socket(socket.AF_INET6 if ":" in str(addr) else socket.AF_INET, sock_type)
    if family == "vsock":
        return socket.socket(AF_VSOCK, sock_type)
    if not hasattr(socket, "AF_HYPERV"):
        raise OSError(_errno.EAFNOSUPPORT, windows_python_problem() or "AF_HYPERV exists only on Windows")
    return socket.socket(socket.AF_HYPERV, sock_type, HV_PROTOCOL_RAW)


def sock_address(family, addr, port, service):
    if family == "tcp":
        return (str(addr), int(port))
    if family == "vsock":
        return (int(addr), int(port))
    import uuid
    return (str(uuid.UUID(str(addr))), str(uuid.UUID(service or service_for_port(port))))


def libc_setsockopt(fd, level, optname, data):
    """setsockopt(2) with a raw buffer through ctypes.

    Needed for vsock: CPython's socket.setsockopt on an AF_VSOCK socket only takes an integer and
    passes it as 8 bytes, while SO_VM_SOCKETS_CONNECT_TIMEOUT wants a struct timeval (16 bytes).
    """
    import ctypes
    libc = load_libc()
    buf = ctypes.create_string_buffer(data, len(data))
    if libc.setsockopt(fd, level, optname, buf, len(data)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, "setsockopt(%d, %d): %s" % (level, optname, os.strerror(code)))


_LIBC = []


def load_libc():
    """libc through ctypes, loaded once per process.

    By its soname first: ctypes.util.find_library runs ldconfig or gcc, a process start that
    costs 10-50 s on a nested TCG guest (lab-recipe.md) and would land in every connect's time.
    """
    if not _LIBC:
        import ctypes
        try:
            _LIBC.append(ctypes.CDLL("libc.so.6", use_errno=True))
        except OSError:
            import ctypes.util
            _LIBC.append(ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True))
    return _LIBC[0]


def set_connect_timeout(sock, family, seconds):
    """Explicit connect timeouts: Python exports neither socket option."""
    if family == "vsock":
        sec = int(seconds)
        usec = int(round((seconds - sec) * 1e6))
        libc_setsockopt(sock.fileno(), AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, struct.pack("ll", sec, usec))
    elif family == "hyperv":
        sock.setsockopt(HV_PROTOCOL_RAW, HVSOCKET_CONNECT_TIMEOUT, struct.pack("<I", hyperv_connect_timeout_ms(seconds)))


def hyperv_connect_timeout_ms(seconds):
    """HVSOCKET_CONNECT_TIMEOUT in ms, clamped to 1..HVSOCKET_CONNECT_TIMEOUT_MAX (hvsocket.h: 300000):
    Winsock rejects a larger value with WSAEINVAL, which would turn the cell into E before connecting."""
    return max(1, min(HVSOCKET_CONNECT_TIMEOUT_MAX, int(round(float(seconds) * 1000))))


def peer_text(family, peer):
    if isinstance(peer, tuple):
        return ":".join(str(p) for p in peer[:2])
    return str(peer)


def os_error_fields(exc):
    num = getattr(exc, "winerror", None) if IS_WINDOWS else None
    num = num or exc.errno
    if num is None and isinstance(exc, socket.timeout):
        num = timeout_errno()
    return {"errno": num, "errno_name": errno_name(num), "message": str(exc) or exc.__class__.__name__}


# ---------------------------------------------------------------- server

class Listener(object):
    """One bound, listening socket answering "Hello: " + payload until count or timeout.

    stream: one echo per connection; seqpacket: one echo per message, SEQPACKET_MESSAGES of them
    per connection (so the client sees whether boundaries held); dgram: one echo per datagram,
    sent back to its sender (no listen/accept: "accepted" counts datagrams).
    """

    def __init__(self, family, addr, port, service=None, count=1, timeout=30.0, lab_node=False, emit=None,
                 kind="stream"):
        self.family = family
        self.kind = kind
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
        try:
            self.sock = make_socket(self.family, self.addr, self.lab_node, self.kind)
            phase = "bind"
            if self.family == "tcp":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            address = sock_address(self.family, self.addr, self.port, self.service)
            self.sock.bind(address)
            if self.kind != "dgram":
                phase = "listen"
                self.sock.listen(8)
        except OSError as exc:
            self.close_socket()
            self.close_wake()
            event = {"event": "bind_failed", "phase": phase, "socket": self.kind}
            event.update(os_error_fields(exc))
            return event
        if not IS_WINDOWS:
            self._wake = os.pipe()
        event = {"event": "listening", "family": self.family, "addr": str(self.addr), "port": self.port,
                 "socket": self.kind}
        if self.family == "tcp":
            event["port"] = self.sock.getsockname()[1]
            self.port = event["port"]
        if self.family == "hyperv":
            event["service"] = address[1]
        return event

    def start(self):
        self.thread = threading.Thread(target=self.serve, name="listener", daemon=True)
        self.thread.start()

    def serve(self):
        deadline = time.monotonic() + self.timeout
        try:
            while not self.stopped.is_set() and (not self.count or self.accepted < self.count):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                pysock = self.sock
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
            try:
                os.close(fd)
            except OSError:
                pass

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
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            event = {"event": "accepted", "peer": text, "received": "".join(received)}
            if self.kind == "seqpacket":
                event["messages"] = received
        except OSError as exc:
            event = {"event": "accepted", "peer": text, "error": str(exc)}
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
            event = {"event": "accepted", "peer": text, "received": data.decode("utf-8", "replace")}
        except OSError as exc:
            event = {"event": "accepted", "peer": text, "error": str(exc)}
        self.emit(event)

    def stop(self, wait=5.0):
        self.stopped.set()
        with self._wake_lock:
            if self._wake is not None:
                try:
                    os.write(self._wake[1], b"x")
                except OSError:
                    pass
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() at once (Linux)
            except OSError:
                pass
        if self.thread is not None:
            self.thread.join(wait)
        self.close_socket()
        return {"event": "stopped", "accepted": self.accepted, "peers": list(self.peers), "errors": list(self.errors)}

    def close_socket(self):
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


# ---------------------------------------------------------------- client

def connect_once(family, addr, port, service=None, payload="World!", timeout=10.0, connect_timeout=None,
                 lab_node=False, kind="stream"):
    """Connect, send, read the echo: the result event.

    X only when the node refused the connection: connect() failed, or -- for a non-stream type --
    socket() refused the type, or a datagram could not be sent or got no answer in time.
    """
    timeout = float(timeout)
    connect_timeout = float(connect_timeout if connect_timeout is not None else timeout)
    start = time.monotonic()
    result = {"event": "result", "family": family, "addr": str(addr), "port": int(port), "socket": kind,
              "errno": None, "errno_name": None, "reply": None}
    try:
        sock = make_socket(family, addr, lab_node, kind)
    except Refused:
        raise
    except (OSError, ValueError) as exc:
        refused_type = isinstance(exc, OSError) and kind != "stream"  # the node's answer to the type
        result.update({"outcome": "X" if refused_type else "E", "phase": "socket", "elapsed_ms": now_ms(start),
                       "message": str(exc)})
        if isinstance(exc, OSError):
            result.update(os_error_fields(exc))
        return result
    try:
        try:
            address = sock_address(family, addr, port, service)
            if kind != "dgram":  # the connect timeouts are options of connection-oriented sockets only
                set_connect_timeout(sock, family, connect_timeout)
        except (OSError, ValueError) as exc:  # the harness could not prepare the socket: never X
            result.update({"outcome": "E", "phase": "setup", "elapsed_ms": now_ms(start), "message": str(exc)})
            if isinstance(exc, OSError):
                result.update(os_error_fields(exc))
            return result
        try:
            sock.settimeout(connect_timeout + (1.0 if family != "tcp" else 0.0))
            sock.connect(address)
        except OSError as exc:
            result.update({"outcome": "X", "phase": "connect", "elapsed_ms": now_ms(start)})
            result.update(os_error_fields(exc))
            return result
        connected_ms = now_ms(start)
        result["connect_ms"] = connected_ms
        if kind != "stream":
            exchange = exchange_messages if kind == "seqpacket" else exchange_datagram
            result.update(exchange(sock, payload, max(0.1, timeout - (time.monotonic() - start))))
            result["elapsed_ms"] = now_ms(start)
            return result
        expected = REPLY_PREFIX + payload
        try:
            sock.settimeout(max(0.1, timeout - (time.monotonic() - start)))
            sock.sendall(payload.encode("utf-8"))
            chunks = []
            total = 0
            while total < len(expected.encode("utf-8")) + MAX_READ:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if b"".join(chunks).decode("utf-8", "replace") == expected:
                    break
            reply = b"".join(chunks).decode("utf-8", "replace")
        except OSError as exc:
            result.update({"outcome": "E", "phase": "reply", "elapsed_ms": now_ms(start)})
            result.update(os_error_fields(exc))
            return result
        result.update({"phase": "reply", "elapsed_ms": now_ms(start), "reply": reply,
                       "outcome": "O" if reply == expected else "E"})
        if reply != expected:
            result["message"] = "connected but the reply was %r, expected %r" % (reply, expected)
        return result
    finally:
        try:
            sock.close()
        except OSError:
            pass


def exchange_messages(sock, payload, timeout):
    """seqpacket: SEQPACKET_MESSAGES messages out, as many echoes back, each one whole and alone.

    Both messages are sent before anything is read, so a transport that merged them (a stream)
    would hand the server one "payloadpayload" and the client one "Hello: payloadpayload".
    """
    expected = REPLY_PREFIX + payload
    messages = []
    try:
        sock.settimeout(timeout)
        for _ in range(SEQPACKET_MESSAGES):
            sock.send(payload.encode("utf-8"))
        for _ in range(SEQPACKET_MESSAGES):
            try:
                data = sock.recv(len(expected.encode("utf-8")) + MAX_READ)
            except socket.timeout:  # a merged echo leaves the second read waiting: judged below
                break
            if not data:
                break
            messages.append(data.decode("utf-8", "replace"))
    except OSError as exc:
        out = {"outcome": "E", "phase": "reply", "messages": messages}
        out.update(os_error_fields(exc))
        return out
    out = {"phase": "reply", "messages": messages, "reply": messages[0] if messages else ""}
    if messages == [expected] * SEQPACKET_MESSAGES:
        out["outcome"] = "O"
    else:
        out.update({"outcome": "E", "message": "message boundaries not kept: sent %d x %r, received %r"
                    % (SEQPACKET_MESSAGES, payload, messages)})
    return out


def exchange_datagram(sock, payload, timeout):
    """dgram: one datagram out, its echo back; a send refused or no answer in time is X."""
    try:
        sock.send(payload.encode("utf-8"))
    except OSError as exc:
        out = {"outcome": "X", "phase": "send"}
        out.update(os_error_fields(exc))
        return out
    try:
        sock.settimeout(timeout)
        data = sock.recv(MAX_READ + len(payload.encode("utf-8")) + len(REPLY_PREFIX))
    except socket.timeout:
        return {"outcome": "X", "phase": "reply", "errno": timeout_errno(), "errno_name": errno_name(timeout_errno()),
                "message": "no datagram came back within %gs" % timeout}
    except OSError as exc:  # e.g. ECONNREFUSED: the ICMP answer to a datagram nobody listens for
        out = {"outcome": "X", "phase": "reply"}
        out.update(os_error_fields(exc))
        return out
    reply = data.decode("utf-8", "replace")
    out = {"phase": "reply", "reply": reply, "outcome": "O" if reply == REPLY_PREFIX + payload else "E"}
    if out["outcome"] == "E":
        out["message"] = "the datagram that came back was %r, expected %r" % (reply, REPLY_PREFIX + payload)
    return out


# ---------------------------------------------------------------- info

def local_cid():
    import fcntl
    with open("/dev/vsock", "rb") as f:
        buf = bytearray(4)
        fcntl.ioctl(f.fileno(), IOCTL_VM_SOCKETS_GET_LOCAL_CID, buf, True)
        return struct.unpack("I", bytes(buf))[0]


def windows_vm_id():
    """VirtualMachineId from the 64-bit registry view: a 32-bit Python on 64-bit Windows would
    otherwise be redirected to WOW6432Node, where the integration services write nothing."""
    try:
        import uuid
        import winreg
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Virtual Machine\Guest\Parameters",
                            0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY) as key:
            value, _ = winreg.QueryValueEx(key, "VirtualMachineId")
        return str(uuid.UUID(str(value)))
    except Exception:
        return None


def info_facts(lab_node=False):
    import platform
    import subprocess
    facts = {"event": "info", "hostname": socket.gethostname(), "os": platform.system().lower(),
             "kernel": platform.release(), "python": platform.python_version(),
             "local_cid": None, "dev_vsock": os.path.exists("/dev/vsock"), "vsock_modules": [],
             "socat_version": None, "vm_id": None, "lab_node": lab_allowed(lab_node),
             "af_hyperv": hyperv_available(), "python_problem": windows_python_problem()}
    if facts["dev_vsock"]:
        if facts["lab_node"]:
            try:
                facts["local_cid"] = local_cid()
            except OSError as exc:
                facts["local_cid_error"] = str(exc)
        else:
            facts["refused"] = ["/dev/vsock ioctl: not a lab node"]
    try:
        with open("/proc/modules") as f:
            facts["vsock_modules"] = sorted(
                line.split()[0] for line in f
                if "vsock" in line.split()[0] or line.split()[0] in ("hv_sock", "vmw_vmci"))
    except OSError:
        pass
    try:
        out = subprocess.run(["socat", "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=5)
        for line in out.stdout.decode("utf-8", "replace").splitlines():
            if "socat version" in line:
                facts["socat_version"] = line.split("socat version", 1)[1].split()[0]
                break
    except (OSError, subprocess.SubprocessError):
        pass
    if IS_WINDOWS:
        facts["vm_id"] = windows_vm_id()
    return facts


# ---------------------------------------------------------------- the JSON-line protocol
# Defined once, here: this file must stay ONE stdlib-only file copied to nodes, so the
# controller's agents (harness/agents.py) import these names from it. Every line is one JSON
# object. A request is {"id": N, "op": OP, <REQUEST_FIELDS[OP]>}; its answer carries the same
# id and one of ANSWER_EVENTS[OP]; lines with "id": null come unasked (UNASKED_EVENTS).

REQUEST_FIELDS = {
    "listen": ("family", "addr", "port", "service", "count", "timeout", "socket"),
    "connect": ("family", "addr", "port", "service", "payload", "timeout", "connect_timeout", "socket"),
    "stop": ("listener",),
    "info": (),
    "ping": (),
    "bye": (),
}
REQUIRED_FIELDS = {"listen": ("family", "addr", "port"), "connect": ("family", "addr", "port"),
                   "stop": ("listener",)}
ANSWER_EVENTS = {
    "listen": ("listening", "bind_failed", "refused", "error"),
    "connect": ("result", "refused", "error"),
    "stop": ("stopped", "error"),
    "info": ("info", "error"),
    "ping": ("pong",),
    "bye": ("bye",),
}
UNASKED_EVENTS = ("ready", "accepted", "idle_timeout", "error")


def request_problem(req):
    """Why `req` (a dict) is not a request of this protocol, or None."""
    op = req.get("op")
    if op not in REQUEST_FIELDS:
        return "unknown op %r" % (op,)
    unknown = sorted(set(req) - set(REQUEST_FIELDS[op]) - {"id", "op"})
    if unknown:
        return "%s takes no %s" % (op, ", ".join(unknown))
    missing = [name for name in REQUIRED_FIELDS.get(op, ()) if req.get(name) is None]
    if missing:
        return "%s needs %s" % (op, ", ".join(missing))
    return None


def request_line(rid, op, **fields):
    """One request as its line; a request this probe would refuse is refused here already."""
    req = dict(fields, id=rid, op=op)
    problem = request_problem(req)
    if problem:
        raise ValueError(problem)
    return json.dumps(req, sort_keys=True)


def answer_line(obj):
    return json.dumps(obj, sort_keys=True)


def parse_line(line):
    """A protocol line as a dict; None for anything else (a login banner, a line cut short)."""
    try:
        obj = json.loads(line) if line else None
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


# ---------------------------------------------------------------- session mode

class Session(object):
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
            self.write({"id": None, "event": "error", "message": "malformed request: %s" % exc})
            return
        if req.get("op") == "bye":
            self.write({"id": req.get("id"), "event": "bye"})
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
            resp = {"event": "refused", "message": str(exc)}
        except Exception as exc:  # one answer per request, whatever went wrong
            resp = {"event": "error", "message": "%s: %s" % (exc.__class__.__name__, exc)}
        finally:
            self.touch(-1)
        resp["id"] = rid
        self.write(resp)

    def dispatch(self, req):
        op = req.get("op")
        problem = request_problem(req)
        if problem:
            return {"event": "error", "message": problem}
        if op == "listen":
            return self.op_listen(req)
        if op == "connect":
            return connect_once(req["family"], req["addr"], req["port"], req.get("service"),
                                req.get("payload", "World!"), req.get("timeout", 10.0),
                                req.get("connect_timeout"), self.lab_node, req.get("socket") or "stream")
        if op == "stop":
            with self.lock:
                listener = self.listeners.pop(req.get("listener"), None)
            if listener is None:
                return {"event": "error", "message": "no listener %r" % (req.get("listener"),)}
            return listener.stop()
        if op == "info":
            return info_facts(self.lab_node)
        if op == "ping":
            return {"event": "pong", "listeners": sorted(self.listeners)}
        return {"event": "error", "message": "unknown op %r" % (op,)}

    def op_listen(self, req):
        with self.lock:
            self.next_listener += 1
            name = "L%d" % self.next_listener
        listener = Listener(req["family"], req["addr"], req["port"], req.get("service"), req.get("count", 1),
                            req.get("timeout", 30.0), self.lab_node,
                            emit=lambda event: self.write(dict(event, listener=name)),
                            kind=req.get("socket") or "stream")
        event = listener.open()
        if event["event"] == "listening":
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
                self.write({"id": None, "event": "idle_timeout", "idle_s": round(idle, 1)})
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
    if not IS_WINDOWS:
        try:  # before "ready": the first connect must not pay for loading ctypes (slow nested guests)
            load_libc()
        except OSError:
            pass
    session.write({"id": None, "event": "ready", "pid": os.getpid(), "python": "%d.%d.%d" % sys.version_info[:3],
                   "lab_node": lab_allowed(args.lab_node)})
    reader = threading.Thread(target=read_lines, args=(sys.stdin, session), daemon=True)
    reader.start()
    watcher = threading.Thread(target=session.idle_watch, daemon=True)
    watcher.start()
    session.closing.wait()
    session.close_all()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    return 0


# ---------------------------------------------------------------- command line

def emit(obj):
    sys.stdout.write(answer_line(obj) + "\n")
    sys.stdout.flush()


def build_parser():
    import argparse
    p = argparse.ArgumentParser(prog="probe.py", description="hvsock-matrix probe (JSON lines on stdout)")
    sub = p.add_subparsers(dest="command")

    def common(sp, with_target=True):
        sp.add_argument("--lab-node", action="store_true", help="allow AF_VSOCK (lab nodes only)")
        if with_target:
            sp.add_argument("--family", required=True, choices=["tcp", "vsock", "hyperv"])
            sp.add_argument("--addr", required=True, help="CID integer, GUID or IPv4")
            sp.add_argument("--port", required=True, type=int)
            sp.add_argument("--service", default=None, help="Hyper-V service GUID (default: vsock template)")
            sp.add_argument("--socket", default="stream", choices=sorted(SOCKET_TYPES), help="socket type")

    s = sub.add_parser("serve")
    common(s)
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--timeout", type=float, default=30.0)
    c = sub.add_parser("connect")
    common(c)
    c.add_argument("--payload", required=True)
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--connect-timeout", type=float, default=None)
    i = sub.add_parser("info")
    common(i, with_target=False)
    se = sub.add_parser("session")
    common(se, with_target=False)
    se.add_argument("--idle-timeout", type=float, default=900.0)
    return p


class _SessionArgs(object):
    command = "session"
    idle_timeout = 900.0
    lab_node = False


def parse_session_args(argv):
    """`session [--idle-timeout T] [--lab-node]` without argparse (fewer imports: faster start on
    nested guests, where the session is the one process started per node per run); None if not that."""
    if not argv or argv[0] != "session":
        return None
    args = _SessionArgs()
    rest = list(argv[1:])
    while rest:
        word = rest.pop(0)
        if word == "--lab-node":
            args.lab_node = True
        elif word == "--idle-timeout" and rest:
            args.idle_timeout = float(rest.pop(0))
        elif word.startswith("--idle-timeout="):
            args.idle_timeout = float(word.split("=", 1)[1])
        else:
            return None  # let argparse explain
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_session_args(argv)
    except ValueError:
        args = None
    if args is None:
        args = build_parser().parse_args(argv)
    problem = windows_python_problem()
    if problem and args.command in ("serve", "connect", "session"):  # `info` still answers, for the doctor
        emit({"event": "error", "message": problem})
        return 2
    try:
        if args.command == "serve":
            listener = Listener(args.family, args.addr, args.port, args.service, args.count, args.timeout,
                                args.lab_node, emit=emit, kind=args.socket)
            event = listener.open()
            emit(event)
            if event["event"] != "listening":
                return 1
            listener.serve()
            emit({"event": "done", "accepted": listener.accepted, "peers": listener.peers})
            return 0
        if args.command == "connect":
            result = connect_once(args.family, args.addr, args.port, args.service, args.payload, args.timeout,
                                  args.connect_timeout, args.lab_node, args.socket)
            emit(result)
            return 0 if result["outcome"] == "O" else 1
        if args.command == "info":
            emit(info_facts(args.lab_node))
            return 0
        if args.command == "session":
            return run_session(args)
    except Refused as exc:
        emit({"event": "refused", "message": str(exc)})
        return EXIT_REFUSED
    except ValueError as exc:
        emit({"event": "error", "message": str(exc)})
        return 2
    build_parser().print_usage(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
