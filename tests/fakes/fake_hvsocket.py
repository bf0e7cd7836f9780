"""Fake `socket` modules as CPython on Windows has them, for the probe's AF_HYPERV paths.

No Windows here, so the probe's Windows code runs against these stand-ins, each mirroring what the
real CPython does (python/cpython, Modules/socketmodule.c):

- `cpython312_windows()`: 3.12+ built with HAVE_AF_HYPERV. `socket.AF_HYPERV` (34), `HV_PROTOCOL_RAW`,
  `HVSOCKET_CONNECT_TIMEOUT`, `HVSOCKET_CONNECT_TIMEOUT_MAX` and the `HV_GUID_*` constants exist
  (PyInit__socket). bind/connect take a (vm_id, service_id) tuple of two str, parsed with
  UuidFromStringW (getsockaddrarg, case AF_HYPERV: "AF_HYPERV address must be tuple", "... must be
  a str"); accept returns the peer as (vm_id, service_id) strings from UuidToStringW (makesockaddr,
  case AF_HYPERV: lowercase, no braces).
- `cpython311_windows()`: before 3.12 there is no AF_HYPERV at all; a handle of family 34 wrapped
  with socket.socket(fileno=h) fails in accept() because getsockaddrlen() has no case for it:
  OSError("getsockaddrlen: bad family").

Winsock's side is the fake's own: connect() reaches a listener of this fake with the same service
GUID bound WILDCARD/LOOPBACK or the target VM ID, otherwise WSAECONNREFUSED (10061); setsockopt
records every value, and rejects HVSOCKET_CONNECT_TIMEOUT above HVSOCKET_CONNECT_TIMEOUT_MAX with
WSAEINVAL (10022), as hvsocket.h documents the bound. Nothing here touches a real socket.
That reachability restates the documents (matrix A's wildcards), it mirrors no running code: tests
use it to drive the probe's own code paths, never as evidence of what Windows answers.
"""
from __future__ import annotations

import socket as _real
import struct
import threading
import types
import uuid

AF_HYPERV = 34
HV_PROTOCOL_RAW = 1
HVSOCKET_CONNECT_TIMEOUT = 1
HVSOCKET_CONNECT_TIMEOUT_MAX = 300000  # hvsocket.h
WSAEINVAL, WSAEAFNOSUPPORT, WSAECONNREFUSED = 10022, 10047, 10061
HV_GUIDS = {  # hvsocket.h, as socketmodule.c exports them (str)
    "HV_GUID_ZERO": "00000000-0000-0000-0000-000000000000",
    "HV_GUID_WILDCARD": "00000000-0000-0000-0000-000000000000",
    "HV_GUID_BROADCAST": "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "HV_GUID_CHILDREN": "90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd",
    "HV_GUID_LOOPBACK": "e0e16197-dd56-4a10-9195-5ee7a155a838",
    "HV_GUID_PARENT": "a42e7cda-d03f-480c-9cc2-a4de20abb878",
}


def sockaddr_hv(vm_id: str, service_id: str) -> bytes:
    """The 36-byte SOCKADDR_HV getsockaddrarg fills in: Family u16 = 34, Reserved u16, VmId, ServiceId,
    each GUID in Windows' in-memory layout (Data1/2/3 little-endian, Data4 as is)."""
    return struct.pack("<HH", AF_HYPERV, 0) + uuid.UUID(vm_id).bytes_le + uuid.UUID(service_id).bytes_le


def peer_of(raw: bytes) -> tuple[str, str]:
    """makesockaddr's (vm_id, service_id) for a SOCKADDR_HV: UuidToStringW text (lowercase, no braces)."""
    return str(uuid.UUID(bytes_le=raw[4:20])), str(uuid.UUID(bytes_le=raw[20:36]))


def _parse_address(address) -> bytes:
    """getsockaddrarg, case AF_HYPERV: a tuple of two str, each a GUID UuidFromStringW accepts."""
    if not isinstance(address, tuple):
        raise TypeError(f"AF_HYPERV address must be tuple, not {type(address).__name__}")
    if len(address) != 2 or not all(isinstance(part, str) for part in address):
        raise TypeError("AF_HYPERV address must be a str tuple (vm_id, service_id)")
    try:
        return sockaddr_hv(*address)
    except ValueError:
        raise OSError(1709, "The string universal unique identifier (UUID) is invalid") from None  # RPC_S_INVALID_STRING_UUID


class FakeWinsock:
    """The machine's Hyper-V socket world: listeners by SOCKADDR_HV, and whether the catalog has the provider."""

    def __init__(self, vm_id: str = HV_GUIDS["HV_GUID_PARENT"], provider: bool = True):
        self.vm_id = vm_id
        self.provider = provider
        self.listeners: list[FakeHvSocket] = []
        self.options: list[tuple[int, int, bytes | int]] = []  # every setsockopt, in order
        self.changed = threading.Condition()  # blocking calls wait on it, as Winsock's would block


class _Conn:
    """One accepted/connected stream: the client's payload waits here for the server's recv()."""

    def __init__(self, payload: bytes = b""):
        self.to_server = payload
        self.to_client = b""
        self.closed_by = ""  # the side that shut down its sending half


class FakeHvSocket:
    def __init__(self, winsock: FakeWinsock, family=AF_HYPERV, type=_real.SOCK_STREAM, proto=HV_PROTOCOL_RAW,
                 conn: _Conn | None = None, side: str = ""):
        if family != AF_HYPERV:
            raise AssertionError(f"fake Hyper-V socket module asked for family {family}")
        if not winsock.provider:
            raise OSError(WSAEAFNOSUPPORT, "An address incompatible with the requested protocol was used")
        self.winsock = winsock
        self.bound: bytes | None = None
        self.listening = False
        self.pending: list[_Conn] = []
        self.conn = conn
        self.side = side
        self.timeout = None
        self.closed = False

    def setsockopt(self, level, option, value):
        self.winsock.options.append((level, option, value))
        if (level, option) == (HV_PROTOCOL_RAW, HVSOCKET_CONNECT_TIMEOUT):
            ms = struct.unpack("<I", value)[0] if isinstance(value, bytes) else int(value)
            if not 0 < ms <= HVSOCKET_CONNECT_TIMEOUT_MAX:
                raise OSError(WSAEINVAL, "An invalid argument was supplied")

    def settimeout(self, value):
        self.timeout = value

    def bind(self, address):
        self.bound = _parse_address(address)

    def listen(self, backlog):
        self.listening = True
        self.winsock.listeners.append(self)

    def connect(self, address):
        target = _parse_address(address)
        vm, service = peer_of(target)
        for listener in self.winsock.listeners:
            bound_vm, bound_service = peer_of(listener.bound)
            if bound_service == service and bound_vm in (HV_GUIDS["HV_GUID_WILDCARD"], HV_GUIDS["HV_GUID_LOOPBACK"], vm):
                self.conn = _Conn()
                self.side = "client"
                with self.winsock.changed:
                    listener.pending.append(self.conn)
                    self.winsock.changed.notify_all()
                return
        raise OSError(WSAECONNREFUSED, "No connection could be made because the target machine actively refused it")

    def _wait(self, ready) -> None:
        with self.winsock.changed:
            if not self.winsock.changed.wait_for(ready, timeout=self.timeout):
                raise TimeoutError("timed out")

    def accept(self):
        self._wait(lambda: self.pending)
        conn = self.pending.pop(0)
        _, service = peer_of(self.bound)
        return FakeHvSocket(self.winsock, conn=conn, side="server"), (HV_GUIDS["HV_GUID_LOOPBACK"], service)

    def sendall(self, data):
        with self.winsock.changed:
            if self.side == "client":
                self.conn.to_server += bytes(data)
            else:
                self.conn.to_client += bytes(data)
            self.winsock.changed.notify_all()

    def recv(self, size):
        attr = "to_server" if self.side == "server" else "to_client"
        self._wait(lambda: getattr(self.conn, attr) or self.conn.closed_by != "")
        with self.winsock.changed:
            data = getattr(self.conn, attr)
            setattr(self.conn, attr, data[size:])
        return data[:size]

    def shutdown(self, how):
        with self.winsock.changed:
            self.conn.closed_by = self.side
            self.winsock.changed.notify_all()

    def close(self):
        self.closed = True
        if self in self.winsock.listeners:
            self.winsock.listeners.remove(self)


class _HandleSocket:
    """socket.socket(fileno=h) over an AF_HYPERV handle on CPython < 3.12."""

    def settimeout(self, value):
        pass

    def accept(self):
        raise OSError("getsockaddrlen: bad family")  # socketmodule.c getsockaddrlen(), default case

    def close(self):
        pass


def _module(name: str) -> types.ModuleType:
    """A copy of the real socket module without anything Hyper-V (what CPython on Linux or < 3.12 has)."""
    module = types.ModuleType(name)
    for attr in dir(_real):
        if not attr.startswith("__") and not attr.startswith(("AF_HYPERV", "HV_", "HVSOCKET_")):
            setattr(module, attr, getattr(_real, attr))
    return module


def cpython312_windows(winsock: FakeWinsock) -> types.ModuleType:
    module = _module("fake_socket_cpython312_windows")
    module.AF_HYPERV = AF_HYPERV
    module.HV_PROTOCOL_RAW = HV_PROTOCOL_RAW
    module.HVSOCKET_CONNECT_TIMEOUT = HVSOCKET_CONNECT_TIMEOUT
    module.HVSOCKET_CONNECT_TIMEOUT_MAX = HVSOCKET_CONNECT_TIMEOUT_MAX
    for name, value in HV_GUIDS.items():
        setattr(module, name, value)

    def make(family=-1, type=-1, proto=-1, fileno=None):
        if family == AF_HYPERV:
            return FakeHvSocket(winsock, family, type, proto)
        return _real.socket(family, type, proto, fileno)

    module.socket = make
    return module


def cpython311_windows() -> types.ModuleType:
    module = _module("fake_socket_cpython311_windows")

    def make(family=-1, type=-1, proto=-1, fileno=None):
        if fileno is not None:
            return _HandleSocket()
        return _real.socket(family, type, proto)

    module.socket = make
    return module
