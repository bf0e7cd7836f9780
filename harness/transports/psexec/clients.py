"""The pool of pypsexec Clients: ONE per process per host, shared by every transport of that host.

Why one: pypsexec names its service and pipes `PAExec-<controller pid>-<controller host>`
(client.py Client.__init__), so two Clients in one process would collide on a server, and a forked
child must not reuse its parent's (registry keyed by (pid, host:port)). Calls on one Client are
serialised (its pipe names are fixed). Never `Client.cleanup()`: it deletes every PAExec-* service,
including other processes' (xdist workers); the last user of a Client removes only its own service.
The password comes from os.environ[access.password_env], and is never logged or shown.
"""
from __future__ import annotations

import math
import os
import re
import threading
from typing import Callable

from harness import timeouts
from harness.errors import NodeError
from harness.transports.psexec.files import SmbFiles

SMB_PORT = 445
CALL_GRACE = timeouts.PSEXEC_CALL_GRACE  # past a command's own timeout before the controller gives up on the Client
BROKEN_RETIRE_WAIT = timeouts.PSEXEC_BROKEN_RETIRE  # a hung Client's time to finish before its node stays unusable


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- factories the tests replace with fakes ------------------------------------------------------

def _pypsexec_client(server: str, username: str | None, password: str | None, port: int, encrypt: bool):
    from pypsexec.client import Client

    return Client(server, username=username, password=password, port=port, encrypt=encrypt)


client_factory: Callable = _pypsexec_client
files_factory: Callable = SmbFiles


class SharedClient:
    def __init__(self, client, files, key: tuple[int, str] | None = None):
        self.client = client
        self.files = files
        self.key = key
        self.retired = threading.Event()  # set once its service is removed and it is disconnected
        self.swept = False  # paexec_sweep ran through this Client
        self.lock = threading.Lock()  # one PAExec run at a time on this Client (fixed pipe names)
        self.users = 0
        self.broken = False
        self.deployed: set[str] = set()


_REGISTRY: dict[tuple[int, str], SharedClient] = {}
_BROKEN: dict[tuple[int, str], str] = {}  # key -> why: a call hung and its Client is not retired yet
_REGISTRY_LOCK = threading.Lock()


def registry_key(access) -> tuple[int, str]:
    return (os.getpid(), f"{access.host.lower()}:{access.port or SMB_PORT}")


def shared_clients() -> dict[tuple[int, str], SharedClient]:
    """The live registry (for tests and diagnostics)."""
    return _REGISTRY


def mark_broken(key: tuple[int, str], shared: SharedClient, reason: str) -> None:
    """No new Client for this host until this one is retired (retire)."""
    with _REGISTRY_LOCK:
        shared.broken = True
        _BROKEN[key] = reason


def _password(node) -> str | None:
    name = node.access.password_env
    if not name:
        return None  # Kerberos / cached credentials
    value = os.environ.get(name)
    if value is None:
        raise NodeError(node.name, f"environment variable {name} is not set (the psexec password for "
                                   f"{node.access.user or 'the current user'}@{node.access.host})")
    return value


def acquire(node) -> SharedClient:
    access = node.access
    if not access.host:
        raise NodeError(node.name, "psexec access needs access.host")
    key = registry_key(access)
    with _REGISTRY_LOCK:
        if key in _BROKEN:
            raise NodeError(node.name, f"psexec to {access.host} unusable until its hung Client is retired: "
                                       f"{_BROKEN[key]} (a new Client would reuse its PAExec service name)")
        shared = _REGISTRY.get(key)
        if shared is not None and not shared.broken:
            shared.users += 1
            return shared
        password = _password(node)
        port = access.port or SMB_PORT
        client = None
        try:
            client = client_factory(access.host, access.user, password, port, True)
            client.connect(timeout=int(math.ceil(access.connect_timeout)))
        except NodeError:
            raise
        except Exception as exc:
            raise NodeError(node.name, f"psexec connect to {access.host}:{port} failed: {failure_text(exc)}") from None
        try:
            client.create_service()
            files = files_factory(access.host, access.user, password, port, access.connect_timeout)
        except Exception as exc:
            quietly(client.remove_service, client.disconnect)  # pypsexec copied PAExec-*.exe to ADMIN$ first
            if isinstance(exc, NodeError):
                raise
            raise NodeError(node.name, f"creating the PAExec service on {access.host}:{port} failed: "
                                       f"{failure_text(exc)}") from None
        shared = SharedClient(client, files, key)
        shared.users = 1
        _REGISTRY[key] = shared
        return shared


def quietly(*steps) -> None:
    for step in steps:
        if step is None:
            continue
        try:
            step()
        except Exception:  # the node may be gone; nothing left to do on our side
            pass


_DCERPC_FAULTS = {  # DCE/RPC fault statuses ([MS-RPCE] 2.2.2.11 / C706 appendix E)
    0x1C010002: "nca_s_op_rng_error: the server's Service Control Manager has no such operation (not Windows?)",
    0x00000005: "access denied",
    0x1C010003: "nca_s_unk_if: the server has no Service Control Manager interface",
}


def failure_text(exc: BaseException) -> str:
    """One line for a pypsexec/smbprotocol failure; a DCE/RPC fault PDU's status is named, not dumped."""
    text = str(exc)
    match = re.search(r"status = \((\d+)\)", text)
    if "FaultPDU" in text and match:
        status = int(match.group(1))
        name = _DCERPC_FAULTS.get(status, "unknown fault")
        return f"{type(exc).__name__}: DCE/RPC fault 0x{status:08x} ({name})"
    return one_line(exc)


def release(key: tuple[int, str], shared: SharedClient) -> None:
    with _REGISTRY_LOCK:
        shared.users -= 1
        if shared.users > 0:
            return
        if _REGISTRY.get(key) is shared:
            del _REGISTRY[key]
    if shared.broken:  # a stuck call may hold the Client: tidy up in the background, never block
        threading.Thread(target=retire, args=(shared, BROKEN_RETIRE_WAIT), daemon=True).start()
    else:
        retire(shared, CALL_GRACE)


def retire(shared: SharedClient, wait: float) -> None:
    """Removes this Client's own PAExec service and disconnects (never cleanup(): others' services).

    A broken Client's key stays blocked until this has run: pypsexec names every Client of a process
    `PAExec-<pid>-<controller host>` (client.py Client.__init__), so a second one would delete the
    hung one's service in create_service(), and the old one's remove_service() would later delete
    the new one's. If the hung call never returns, the node stays unusable for this run."""
    if not shared.lock.acquire(timeout=wait):
        return
    try:
        quietly(shared.client.remove_service, shared.client.disconnect, getattr(shared.files, "close", None))
    finally:
        shared.lock.release()
    with _REGISTRY_LOCK:
        _BROKEN.pop(shared.key, None)
    shared.retired.set()
