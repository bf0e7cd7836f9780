"""What every part of the probe shares: the platform, errno names, the lab-node permission.

Stdlib only, Python >= 3.8 (this package is shipped to nodes as one zipapp). Other modules read
`common.IS_WINDOWS` through the module, so one switch (a test's monkeypatch) reaches them all.
"""
import errno as _errno
import os
import time

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


class Refused(Exception):
    """AF_VSOCK asked for on a machine that is not a lab node."""


def errno_name(number):
    """Symbolic name of an errno (Windows sockets: the WSA name)."""
    if number is None:
        return None
    if number in WSA_NAMES and (IS_WINDOWS or number >= 10000):
        return WSA_NAMES[number]
    return _errno.errorcode.get(number) or WSA_NAMES.get(number) or f"ERRNO_{number:d}"


def timeout_errno():
    return 10060 if IS_WINDOWS else _errno.ETIMEDOUT


def lab_allowed(flag=False):
    """True only on a lab node, where AF_VSOCK belongs to the project."""
    return bool(flag) or os.environ.get(LAB_ENV) == "1" or os.path.exists(LAB_MARKER)


def now_ms(start):
    return round((time.monotonic() - start) * 1000.0, 3)
