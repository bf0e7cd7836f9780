"""The pool of pypsexec Clients: ONE per process per host, shared by every transport of that host.

Why one: pypsexec names its service and pipes `PAExec-<controller pid>-<controller host>`
(client.py Client.__init__), and PAExec keys a run's settings by that unique id and creates its
stdout/stderr/stdin pipes as `PAExecOut<host><pid>` (PAExec Remote.cpp HandleMsg MSGID_SETTINGS,
ConsoleRedir.cpp CreateIOPipesInService): two Clients of one process would collide on a server, and
two runs at once on one Client would too. So a host has one Client, its runs are serialised, and a
forked child gets its own (registry keyed by (pid, host:port)). Never `Client.cleanup()`: it deletes
every PAExec-* service, including other processes' (xdist workers); the last user of a Client removes
only its own service and this run's folder.

Time rules (issue 18.5-18.7):
- no process-wide lock is held across network I/O: the registry lock guards dict updates only; a
  Client is opened (connect, session setup, service, SMB files session) on a worker thread bounded by
  timeouts.psexec_open(C), so one stalled host never delays another;
- a call's bound starts when it owns the Client (queue time is not hang time); while queued, a call
  fails at once if the Client it waits for broke;
- a stalled open is aborted by closing its sockets (smbprotocol connection.py Connection.disconnect
  with close=False closes the transport; the receive worker then wakes every waiter, which raises
  SMBConnectionClosed in _check_worker_running);
- a broken Client is released exactly once per user, and retired once, in the background.
The password comes from os.environ[access.password_env], and is never logged or shown.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from harness import timeouts
from harness.errors import NodeError
from harness.transports.base import CommandTimeout
from harness.transports.psexec.files import SmbFiles

log = logging.getLogger(__name__)

SMB_PORT = 445
CALL_GRACE = timeouts.PSEXEC_CALL_GRACE  # past a command's own timeout before the controller gives up on the Client
BROKEN_RETIRE_WAIT = timeouts.PSEXEC_BROKEN_RETIRE  # a hung Client's time to finish before its node stays unusable

Key = tuple[int, str]


def exception_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- factories the tests replace with fakes ------------------------------------------------------

def _pypsexec_client(server: str, username: str | None, password: str | None, port: int, encrypt: bool) -> Any:
    from pypsexec.client import Client

    return Client(server, username=username, password=password, port=port, encrypt=encrypt)


client_factory: Callable[..., Any] = _pypsexec_client
files_factory: Callable[..., Any] = SmbFiles


class SharedClient:
    """One host's pypsexec Client and SMB files session, shared by every transport of that host."""

    def __init__(self, client: Any, files: Any, key: Key | None = None, host: str = ""):
        self.client = client
        self.files = files
        self.key = key
        self.host = host
        self.opened = threading.Event()  # set once the open finished, well or not (error says which)
        if client is not None:
            self.opened.set()
        self.error: str | None = None  # why the open failed
        self.stage = "starting"  # what the open is doing (for the message when it stalls)
        self.finished_open = client is not None
        self.abandoned = False  # the open ran past its bound; whatever it built is torn down when it returns
        self.retired = threading.Event()  # set once its service is removed and it is disconnected
        self.swept = False  # paexec_sweep ran through this Client
        self.lock = threading.Lock()  # one PAExec run at a time on this Client (fixed pipe names)
        self.users = 0
        self.broken = False
        self.broken_reason = ""
        self.deployed: set[str] = set()
        self.run_dirs: set[str] = set()  # UNC paths of this run's folders on the node, removed when it retires


_REGISTRY: dict[Key, SharedClient] = {}
_BROKEN: dict[Key, str] = {}  # key -> why: a call hung (or an open stalled) and its Client is not retired yet
_REGISTRY_LOCK = threading.Lock()  # dict updates only: never held across network I/O


def registry_key(access: Any) -> Key:
    return (os.getpid(), f"{access.host.lower()}:{access.port or SMB_PORT}")


def shared_clients() -> dict[Key, SharedClient]:
    """The live registry (for tests and diagnostics)."""
    return _REGISTRY


def mark_broken(key: Key, shared: SharedClient, reason: str) -> None:
    """No new Client for this host until this one is retired (retire)."""
    with _REGISTRY_LOCK:
        shared.broken = True
        shared.broken_reason = reason
        _BROKEN[key] = reason


def _password(node: Any) -> str | None:
    name = node.access.password_env
    if not name:
        return None  # Kerberos / cached credentials
    value = os.environ.get(name)
    if value is None:
        raise NodeError(node.name, f"environment variable {name} is not set (the psexec password for "
                                   f"{node.access.user or 'the current user'}@{node.access.host})")
    return value


def acquire(node: Any) -> SharedClient:
    """The host's Client, opened by the first caller (outside any shared lock); later callers wait for it."""
    access = node.access
    if not access.host:
        raise NodeError(node.name, "psexec access needs access.host")
    password = _password(node)
    key = registry_key(access)
    with _REGISTRY_LOCK:
        if key in _BROKEN:
            raise NodeError(node.name, f"psexec to {access.host} unusable until its hung Client is retired: "
                                       f"{_BROKEN[key]} (a new Client would reuse its PAExec service name)")
        shared = _REGISTRY.get(key)
        opener = shared is None or shared.broken
        if opener:
            shared = SharedClient(None, None, key, access.host)
            _REGISTRY[key] = shared
        assert shared is not None
        shared.users += 1
    if opener:
        _open(shared, node, password)
    elif not shared.opened.wait(timeouts.psexec_open(access.connect_timeout) + timeouts.PSEXEC_ABORT):
        release(shared)  # the opener's own bound passes first; this is a backstop
        raise NodeError(node.name, f"psexec to {access.host}: its Client did not open in time")
    if shared.error is not None:
        release(shared)
        raise NodeError(node.name, shared.error)
    return shared


def _open(shared: SharedClient, node: Any, password: str | None) -> None:
    """connect, create_service and the SMB files session on a worker thread, bounded as a whole; on a
    stall its sockets are closed and the host is blocked until the worker returns (service names)."""
    access = node.access
    port = access.port or SMB_PORT
    bound = timeouts.psexec_open(access.connect_timeout)

    def work() -> None:
        error = None
        try:
            shared.stage = "connect and SMB session setup"
            log.debug("psexec %s: opening a pypsexec Client to %s:%d", node.name, access.host, port)
            client = client_factory(access.host, access.user, password, port, True)
            shared.client = client
            client.connect(timeout=math.ceil(access.connect_timeout))
        except Exception as exc:
            if not shared.abandoned:  # (an abandoned open's sockets are closed already)
                abort(shared)  # a socket the failed session setup left open
            error = f"psexec connect to {access.host}:{port} failed: {failure_text(exc)}"
        if error is None:
            try:
                shared.stage = "PAExec service creation"
                shared.client.create_service()
            except Exception as exc:
                quietly(shared.client.remove_service, shared.client.disconnect)  # PAExec-*.exe went to ADMIN$ first
                error = f"creating the PAExec service on {access.host}:{port} failed: {failure_text(exc)}"
        if error is None:
            try:
                shared.stage = "SMB files session"
                shared.files = files_factory(access.host, access.user, password, port, access.connect_timeout)
            except Exception as exc:
                quietly(shared.client.remove_service, shared.client.disconnect)
                error = f"the SMB files session to {access.host}:{port} failed: {failure_text(exc)}"
        with _REGISTRY_LOCK:
            shared.finished_open = True
            abandoned = shared.abandoned
            if error is not None and not abandoned:
                shared.error = error
                if shared.key is not None and _REGISTRY.get(shared.key) is shared:
                    del _REGISTRY[shared.key]
        if abandoned:  # the controller gave up on this open: undo what it built, then free the host
            if error is None:
                quietly(shared.client.remove_service, shared.client.disconnect,
                        getattr(shared.files, "close", None))
            with _REGISTRY_LOCK:
                if shared.key is not None:
                    _BROKEN.pop(shared.key, None)
        shared.opened.set()

    thread = threading.Thread(target=work, name=f"psexec-open-{node.name}", daemon=True)
    thread.start()
    thread.join(bound)
    with _REGISTRY_LOCK:
        stalled = not shared.finished_open
        if stalled:
            shared.abandoned = True
            shared.error = (f"psexec to {access.host}:{port}: no answer within {bound:g}s "
                            f"during {shared.stage}")
            if shared.key is not None:
                _BROKEN[shared.key] = shared.error
                if _REGISTRY.get(shared.key) is shared:
                    del _REGISTRY[shared.key]
    if stalled:
        log.debug("psexec %s: %s; closing its sockets", node.name, shared.error)
        abort(shared)
        thread.join(timeouts.PSEXEC_ABORT)  # with its sockets closed it gives up at once and frees the host
        shared.opened.set()  # waiters see the error now, not when the worker gives up


def abort(shared: SharedClient) -> None:
    """Closes the sockets under a stalled Client and its files session, so blocked SMB waits end
    (smbprotocol connection.py Connection.disconnect(close=False): transport.close(), the receive worker
    ends and sets every outstanding request's event). Never sends anything."""
    connection = getattr(shared.client, "connection", None)
    if connection is not None:
        quietly(lambda: connection.disconnect(close=False))
    quietly(getattr(shared.files, "abort", None))


def _bounded(fn: Callable[[], Any], seconds: float, name: str, then: Callable[[], None] | None = None
             ) -> dict[str, Any] | None:
    """fn() on a daemon thread, waited for `seconds`: {"value": ...} or {"error": exc}, or None while it
    still runs (it is left to finish; `then` runs after it whenever that is)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            if then is not None:
                then()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    thread.join(seconds)
    return None if thread.is_alive() else box


def _value(box: dict[str, Any], node_name: str, what: str) -> Any:
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, NodeError):
            raise exc
        raise NodeError(node_name, f"{what} failed: {exception_text(exc)}") from None
    return box["value"]


def call(shared: SharedClient, fn: Callable[[Any], Any], timeout: float, node_name: str) -> Any:
    """fn(client) once this call owns the Client, bounded by `timeout` + CALL_GRACE from then on.

    Queued behind other calls, it waits as long as they are within their own bounds; when the call
    ahead hangs (and marks the Client broken), this one fails at once. A hung call keeps the lock
    until it returns, so nothing else runs on that Client meanwhile."""
    while not shared.lock.acquire(timeout=timeouts.PSEXEC_QUEUE_POLL):
        if shared.broken:
            raise NodeError(node_name, f"psexec Client hung: {shared.broken_reason}")
    if shared.broken:
        shared.lock.release()
        raise NodeError(node_name, f"psexec Client hung: {shared.broken_reason}")
    bound = timeout + CALL_GRACE
    box = _bounded(partial(fn, shared.client), bound, f"psexec-{node_name}", then=shared.lock.release)
    if box is None:
        reason = f"a psexec call did not return within {bound:g}s"
        if shared.key is not None:
            mark_broken(shared.key, shared, reason)
        raise CommandTimeout(node_name, reason)
    return _value(box, node_name, "psexec")


def files_call(shared: SharedClient, fn: Callable[[Any], Any], node_name: str) -> Any:
    """fn(files) bounded by PSEXEC_FILE_CALL. smbclient waits on a silent server for its keep-alive
    (~2 x 600 s); past the bound the files session is taken for dead and the Client is retired."""
    box = _bounded(partial(fn, shared.files), timeouts.PSEXEC_FILE_CALL, f"smb-{node_name}")
    if box is None:
        reason = f"an SMB file call did not return within {timeouts.PSEXEC_FILE_CALL:g}s"
        if shared.key is not None:
            mark_broken(shared.key, shared, reason)
        quietly(getattr(shared.files, "abort", None))
        raise NodeError(node_name, reason)
    return _value(box, node_name, "SMB file access")


def quietly(*steps: Callable[[], Any] | None) -> None:
    for step in steps:
        if step is None:
            continue
        with contextlib.suppress(Exception):  # the node may be gone; nothing left to do on our side
            step()


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
    return exception_text(exc)


def release(shared: SharedClient) -> None:
    """One user is done with this Client (call exactly once per acquire). The last one retires it:
    at once when healthy, on one background thread when broken (its hung call may hold it)."""
    with _REGISTRY_LOCK:
        if shared.users <= 0:
            raise RuntimeError(f"psexec Client of {shared.host} released more often than acquired")
        shared.users -= 1
        if shared.users > 0:
            return
        if shared.key is not None and _REGISTRY.get(shared.key) is shared:
            del _REGISTRY[shared.key]
    if shared.client is None or shared.error is not None:
        return  # never opened: nothing on the node to tidy (an abandoned open tidies itself)
    if shared.broken:
        threading.Thread(target=retire, args=(shared, BROKEN_RETIRE_WAIT), daemon=True,
                         name=f"psexec-retire-{shared.host}").start()
    else:
        retire(shared, CALL_GRACE)


def retire(shared: SharedClient, wait: float) -> None:
    """Removes this run's folder, this Client's own PAExec service, and disconnects (never cleanup():
    others' services), all bounded by PSEXEC_CLOSE.

    A broken Client's key stays blocked until this has run: pypsexec names every Client of a process
    `PAExec-<pid>-<controller host>` (client.py Client.__init__), so a second one would delete the
    hung one's service in create_service(), and the old one's remove_service() would later delete
    the new one's. If the hung call never returns, the node stays unusable for this run."""
    if not shared.lock.acquire(timeout=wait):
        return
    try:
        def teardown() -> None:
            for run_dir in sorted(shared.run_dirs):
                log.debug("psexec: removing the run folder %s", run_dir)
                quietly(partial(shared.files.remove_tree, run_dir))
            quietly(shared.client.remove_service, shared.client.disconnect, getattr(shared.files, "close", None))

        if _bounded(teardown, timeouts.PSEXEC_CLOSE, f"psexec-close-{shared.host}") is None:
            abort(shared)
    finally:
        shared.lock.release()
    with _REGISTRY_LOCK:
        if shared.key is not None:
            _BROKEN.pop(shared.key, None)
    shared.retired.set()
