"""Sockets per family: AF_HYPERV, AF_VSOCK (lab nodes only) and TCP, their addresses and options.

Stdlib only, Python >= 3.8. Creation goes through `make_socket` here (tests swap this module's
`socket` for the fakes of tests/fakes/fake_hvsocket.py).
"""
import errno as _errno
import os
import socket
import struct
import sys
from typing import Any

from . import common
from .common import LAB_ENV, LAB_MARKER, Refused, errno_name, lab_allowed

AF_VSOCK = getattr(socket, "AF_VSOCK", 40)
SO_VM_SOCKETS_CONNECT_TIMEOUT = 6  # level AF_VSOCK; value: struct timeval
IOCTL_VM_SOCKETS_GET_LOCAL_CID = 0x7B9  # _IO(7, 0xb9) on /dev/vsock
VMADDR_CID_ANY = 0xFFFFFFFF

AF_HYPERV = 34
HV_PROTOCOL_RAW = 1
HVSOCKET_CONNECT_TIMEOUT = 1  # level HV_PROTOCOL_RAW; value: u32 milliseconds
HVSOCKET_CONNECT_TIMEOUT_MAX = 300000  # hvsocket.h

# socket types by name; SOCK_SEQPACKET is missing from some builds, 5 is its value on Linux and Winsock
SOCKET_TYPES = {"stream": socket.SOCK_STREAM, "seqpacket": getattr(socket, "SOCK_SEQPACKET", 5),
                "dgram": socket.SOCK_DGRAM}
SEQPACKET_MESSAGES = 2  # a seqpacket client sends this many messages; each must come back on its own


# ---------------------------------------------------------------- Hyper-V addresses

def service_for_port(port):
    """The Linux-compatible service GUID: the vsock template with the port in Data1."""
    return f"{int(port):08x}-facb-11e6-bd58-64006a7986d3"


def windows_python_problem():
    """Why this Python cannot run Hyper-V cells on Windows, or None.

    AF_HYPERV is native from CPython 3.12 (Modules/socketmodule.c: HAVE_AF_HYPERV in getsockaddrarg,
    getsockaddrlen and makesockaddr). Before 3.12 an AF_HYPERV socket wrapped by socket.socket(fileno=)
    dies in accept() with "getsockaddrlen: bad family", so a server would print `listening` and never
    answer: every cell would read X instead of E. The probe refuses instead.
    """
    if common.IS_WINDOWS and not hasattr(socket, "AF_HYPERV"):
        version = ".".join(str(n) for n in sys.version_info[:3])
        return (f"Python {version} has no socket.AF_HYPERV: the probe needs Python >= 3.12 on Windows nodes "
                "(winget install Python.Python.3.12, or set access.python)")
    return None


def hyperv_available():
    """True when Winsock has a provider for AF_HYPERV/HV_PROTOCOL_RAW (the "Hyper-V RAW" catalog entry).

    Asked the way Winsock answers it: socket() fails with WSAEAFNOSUPPORT (10047) when the catalog has no
    provider for the family. Only on Windows (elsewhere family 34 means something else, or nothing).
    """
    if not common.IS_WINDOWS or not hasattr(socket, "AF_HYPERV"):
        return False
    try:
        sock = socket.socket(socket.AF_HYPERV, socket.SOCK_STREAM, HV_PROTOCOL_RAW)
    except OSError:
        return False
    sock.close()
    return True


# ---------------------------------------------------------------- sockets per family

def check_family(family, lab_node):
    if family not in ("tcp", "vsock", "hyperv", "hybrid"):
        raise ValueError(f"unknown family {family!r} (expected tcp, vsock, hyperv or hybrid)")
    if family == "vsock" and not lab_allowed(lab_node):
        raise Refused(f"AF_VSOCK refused: not a lab node (pass --lab-node, set {LAB_ENV}=1, or create {LAB_MARKER} on a lab guest)")


def socket_type(name):
    """The SOCK_* number of a type name (ValueError names the known ones)."""
    if name not in SOCKET_TYPES:
        raise ValueError("unknown socket type {!r} (expected {})".format(name, ", ".join(SOCKET_TYPES)))
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
    if family == "hybrid":  # the host side of hybrid vsock: the guest's UDS (hybrid.py), lab paths only
        from .hybrid_paths import check_paths, uds_paths
        check_paths(uds_paths(addr), lab_node)
        return socket.socket(socket.AF_UNIX, sock_type)
    if not hasattr(socket, "AF_HYPERV"):
        raise OSError(_errno.EAFNOSUPPORT, windows_python_problem() or "AF_HYPERV exists only on Windows")
    return socket.socket(socket.AF_HYPERV, sock_type, HV_PROTOCOL_RAW)


def sock_address(family, addr, port, service):
    if family == "tcp":
        return (str(addr), int(port))
    if family == "vsock":
        return (int(addr), int(port))
    if family == "hybrid":  # a client connects to the UDS itself; the port goes in its CONNECT line
        return str(addr)
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
        raise OSError(code, f"setsockopt({level:d}, {optname:d}): {os.strerror(code)}")


_LIBC: "list[Any]" = []


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
        usec = round((seconds - sec) * 1e6)
        libc_setsockopt(sock.fileno(), AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, struct.pack("ll", sec, usec))
    elif family == "hyperv":
        sock.setsockopt(HV_PROTOCOL_RAW, HVSOCKET_CONNECT_TIMEOUT, struct.pack("<I", hyperv_connect_timeout_ms(seconds)))


def hyperv_connect_timeout_ms(seconds):
    """HVSOCKET_CONNECT_TIMEOUT in ms, clamped to 1..HVSOCKET_CONNECT_TIMEOUT_MAX (hvsocket.h: 300000):
    Winsock rejects a larger value with WSAEINVAL, which would turn the cell into E before connecting."""
    return max(1, min(HVSOCKET_CONNECT_TIMEOUT_MAX, round(float(seconds) * 1000)))


def peer_text(family, peer):
    if isinstance(peer, tuple):
        return ":".join(str(p) for p in peer[:2])
    return str(peer)


def os_error_fields(exc):
    num = getattr(exc, "winerror", None) if common.IS_WINDOWS else None
    num = num or exc.errno
    if num is None and isinstance(exc, socket.timeout):
        num = common.timeout_errno()
    return {"errno": num, "errno_name": errno_name(num), "message": str(exc) or exc.__class__.__name__}
