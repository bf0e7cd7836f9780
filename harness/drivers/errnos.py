"""Recognising an errno in a tool's output ("Connection refused", "ECONNREFUSED", "WSAETIMEDOUT").

socat and user commands report failures as text; a cell is X only when the text names a
connect failure we can identify, otherwise E -- E is never counted as X.
"""
from __future__ import annotations

import errno
import os
import re

WSA = {
    "WSAEACCES": 10013, "WSAEINVAL": 10022, "WSAEPROTOTYPE": 10041, "WSAEPROTONOSUPPORT": 10043,
    "WSAESOCKTNOSUPPORT": 10044, "WSAEOPNOTSUPP": 10045, "WSAEAFNOSUPPORT": 10047, "WSAEADDRINUSE": 10048,
    "WSAEADDRNOTAVAIL": 10049, "WSAENETUNREACH": 10051, "WSAECONNRESET": 10054, "WSAETIMEDOUT": 10060,
    "WSAECONNREFUSED": 10061, "WSAEHOSTUNREACH": 10065,
}
_NAMES = {name: num for num, name in errno.errorcode.items()}
_NAMES.update(WSA)
_TOKEN = re.compile(r"\b((?:WSA)?E[A-Z0-9]{2,})\b")
# strerror texts, longest first so "Connection timed out" wins over shorter overlaps
_TEXTS = sorted(((os.strerror(num), name, num) for num, name in errno.errorcode.items()),
                key=lambda t: -len(t[0]))
_WIN_CODE = re.compile(r"\b(100[0-9]{2}|110[0-9]{2})\b")

# errnos that mean "connect() failed" (X), as opposed to a harness or tool problem (E)
CONNECT_FAILURES = {"ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ECONNRESET", "EADDRNOTAVAIL",
                    "EACCES", "EPERM", "ENODEV", "EAFNOSUPPORT", "EINVAL", "ENOTCONN", "ESOCKTNOSUPPORT",
                    "EPROTONOSUPPORT", "ENETDOWN", "EHOSTDOWN"} | set(WSA)


def known_errno(name: str) -> bool:
    """An errno name this harness can observe: Linux (errno module) or Windows sockets (WSA...)."""
    return name in _NAMES


def find_errno(text: str) -> tuple[str, int] | None:
    """(name, number) of the first errno named in `text`, by symbol, strerror text or WSA code."""
    for m in _TOKEN.finditer(text or ""):
        if m.group(1) in _NAMES:
            return m.group(1), _NAMES[m.group(1)]
    for message, name, num in _TEXTS:
        if message and message in (text or ""):
            return name, num
    code = _WIN_CODE.search(text or "")
    if code:
        num = int(code.group(1))
        for name, n in WSA.items():
            if n == num:
                return name, num
    return None
