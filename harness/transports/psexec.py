"""psexec transport: Windows nodes reached over SMB with pypsexec (PAExec service), no agent installed.

Rules this file exists to keep:
- ONE pypsexec Client per process per host (registry keyed by (pid, host)): PAExec names its
  service and pipes after pid and host, so two Clients in one process would collide, and a forked
  child must not reuse its parent's. Calls on one Client are serialised (its pipe names are fixed).
- never `Client.cleanup()`: it deletes every PAExec-* service, including other processes' (xdist
  workers); the last user of a Client removes only its own service.
- PowerShell always as `-EncodedCommand` (harness.hyperv.powershell), argv quoted with
  subprocess.list2cmdline (the Windows CRT rules).
- background servers: PAExec `asynchronous=True` cannot stream output, so a small PowerShell
  wrapper writes the child's stdout lines, pid and exit code to files under the node's workdir,
  and the controller reads them back over SMB (admin share).
- the password comes from os.environ[access.password_env], and is never logged or shown.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Callable

from harness import timeouts
from harness.errors import NodeError
from harness.hyperv.clixml import error_text
from harness.transports import paexec_sweep
from harness.hyperv.powershell import powershell_argv, ps_quote

# Per run, never a fixed path: a folder with a fresh unguessable name under the node's
# C:\Windows\Temp (or access.workdir), so no local user can create it first and plant a
# probe.py there that would run elevated. Relies on C:\Windows\Temp's default ACL: users may
# create their own entries but not touch an administrator's.
RUN_DIR_NAME = f"hvsock-matrix-{uuid.uuid4().hex}"
DEFAULT_WORKDIR_BASE = r"C:\Windows\Temp"
DEFAULT_WORKDIR = DEFAULT_WORKDIR_BASE + "\\" + RUN_DIR_NAME
DEFAULT_PYTHON = ["py", "-3"]
SMB_PORT = 445
CALL_GRACE = timeouts.PSEXEC_CALL_GRACE  # past a command's own timeout before the controller gives up on the Client
SWEEP_TIMEOUT = timeouts.PSEXEC_SWEEP  # listing and removing a killed run's PAExec leftovers
BROKEN_RETIRE_WAIT = timeouts.PSEXEC_BROKEN_RETIRE  # a hung Client's time to finish before its node stays unusable
POLL_START, POLL_MAX = 0.05, 0.5
KILL_GRACE = timeouts.PSEXEC_KILL_GRACE  # for a killed child's wrapper to write its exit code
SPAWN_DIR = "spawn"
CREATE_PROCESS_LIMIT = 32767 - 1  # lpCommandLine, without its terminating NUL

from harness.probe import bundle
from harness.transports.base import PROBE_NAME, CommandResult, CommandTimeout, Process, Transport


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace").replace("\r\n", "\n")


# --- factories the tests replace with fakes ------------------------------------------------------

def _pypsexec_client(server: str, username: str | None, password: str | None, port: int, encrypt: bool):
    from pypsexec.client import Client

    return Client(server, username=username, password=password, port=port, encrypt=encrypt)


class SmbFiles:
    """Files on a Windows node through its admin share, with smbprotocol's high-level smbclient API.

    smbclient keys its connections by `server:port` (smbclient/_pool.py register_session/get_smb_tree),
    and every call without `port=` means 445: each call here passes the node's port and this node's own
    connection cache, so no call ever opens a second, credential-less connection to port 445.
    """

    def __init__(self, server: str, username: str | None, password: str | None, port: int, timeout: float):
        import smbclient

        self._smb = smbclient
        self.server = server
        self._cache: dict = {}
        self._kw = {"port": port, "connection_cache": self._cache}
        smbclient.register_session(server, username=username, password=password, encrypt=True,
                                   connection_timeout=int(max(1, timeout)), **self._kw)

    def write_bytes(self, unc: str, data: bytes) -> None:
        self._makedirs(PureWindowsPath(unc).parent)
        with self._smb.open_file(unc, mode="wb", **self._kw) as handle:
            handle.write(data)

    def _makedirs(self, directory: PureWindowsPath) -> None:
        """Each directory below the share, top down. Not smbclient.makedirs: when the share itself is
        missing it loops forever (smbclient/_os.py makedirs: ntpath.dirname of the share root is itself)."""
        current = PureWindowsPath(directory.anchor)
        for part in directory.parts[1:]:
            current = current / part
            try:
                self._smb.mkdir(str(current), **self._kw)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise

    def read_from(self, unc: str, offset: int) -> bytes | None:
        """Bytes from `offset` on, or None when the file does not exist (yet). Opened sharing rwd:
        the wrapper is still writing it."""
        try:
            with self._smb.open_file(unc, mode="rb", share_access="rwd", **self._kw) as handle:
                handle.seek(offset)
                return handle.read()
        except OSError as exc:  # smbprotocol's SMBOSError is an OSError, not a FileNotFoundError
            if exc.errno == errno.ENOENT:
                return None
            raise

    def remove(self, unc: str) -> None:
        try:
            self._smb.remove(unc, **self._kw)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def close(self) -> None:
        """Closes this node's SMB connections (smbclient.reset_connection_cache on our own cache)."""
        self._smb.reset_connection_cache(fail_on_error=False, connection_cache=self._cache)


client_factory: Callable = _pypsexec_client
files_factory: Callable = SmbFiles


# --- one Client per process per host --------------------------------------------------------------

class _SharedClient:
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


_REGISTRY: dict[tuple[int, str], _SharedClient] = {}
_BROKEN: dict[tuple[int, str], str] = {}  # key -> why: a call hung and its Client is not retired yet
_REGISTRY_LOCK = threading.Lock()


def _registry_key(access) -> tuple[int, str]:
    return (os.getpid(), f"{access.host.lower()}:{access.port or SMB_PORT}")


def shared_clients() -> dict[tuple[int, str], _SharedClient]:
    """The live registry (for tests and diagnostics)."""
    return _REGISTRY


def _password(node) -> str | None:
    name = node.access.password_env
    if not name:
        return None  # Kerberos / cached credentials
    value = os.environ.get(name)
    if value is None:
        raise NodeError(node.name, f"environment variable {name} is not set (the psexec password for "
                                   f"{node.access.user or 'the current user'}@{node.access.host})")
    return value


def _acquire(node) -> _SharedClient:
    access = node.access
    if not access.host:
        raise NodeError(node.name, "psexec access needs access.host")
    key = _registry_key(access)
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
            _quietly(client.remove_service, client.disconnect)  # pypsexec copied PAExec-*.exe to ADMIN$ first
            if isinstance(exc, NodeError):
                raise
            raise NodeError(node.name, f"creating the PAExec service on {access.host}:{port} failed: "
                                       f"{failure_text(exc)}") from None
        shared = _SharedClient(client, files, key)
        shared.users = 1
        _REGISTRY[key] = shared
        return shared


def _quietly(*steps) -> None:
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
    return _one_line(exc)


def _release(key: tuple[int, str], shared: _SharedClient) -> None:
    with _REGISTRY_LOCK:
        shared.users -= 1
        if shared.users > 0:
            return
        if _REGISTRY.get(key) is shared:
            del _REGISTRY[key]
    if shared.broken:  # a stuck call may hold the Client: tidy up in the background, never block
        threading.Thread(target=_retire, args=(shared, BROKEN_RETIRE_WAIT), daemon=True).start()
    else:
        _retire(shared, CALL_GRACE)


def _retire(shared: _SharedClient, wait: float) -> None:
    """Removes this Client's own PAExec service and disconnects (never cleanup(): others' services).

    A broken Client's key stays blocked until this has run: pypsexec names every Client of a process
    `PAExec-<pid>-<controller host>` (client.py Client.__init__), so a second one would delete the
    hung one's service in create_service(), and the old one's remove_service() would later delete
    the new one's. If the hung call never returns, the node stays unusable for this run."""
    if not shared.lock.acquire(timeout=wait):
        return
    try:
        _quietly(shared.client.remove_service, shared.client.disconnect, getattr(shared.files, "close", None))
    finally:
        shared.lock.release()
    with _REGISTRY_LOCK:
        _BROKEN.pop(shared.key, None)
    shared.retired.set()


# --- paths -----------------------------------------------------------------------------------------

_DRIVE_RE = re.compile(r"^([A-Za-z]):\\(.*)$")


def admin_share_path(host: str, windows_path: str) -> str:
    r"""`C:\Windows\Temp\x` on `host` -> `\\host\C$\Windows\Temp\x` (the admin share)."""
    match = _DRIVE_RE.match(windows_path.replace("/", "\\"))
    if not match:
        raise ValueError(f"not an absolute Windows path with a drive letter: {windows_path!r}")
    return f"\\\\{host}\\{match.group(1).upper()}$\\{match.group(2)}"


# --- background processes --------------------------------------------------------------------------

def spawn_script(executable: str, arguments: str, base: str) -> str:
    r"""The wrapper PAExec starts asynchronously: runs argv, appends each stdout line to `<base>.out`
    (shared for reading, flushed per line), then writes `<base>.err` and `<base>.rc`; `<base>.pid`
    holds the child's pid for kill(). If the child cannot start, `.err` says why and `.rc` is -1,
    so the controller sees EOF at once instead of waiting for a line that never comes."""
    body = [
        "$psi = New-Object System.Diagnostics.ProcessStartInfo",
        f"$psi.FileName = {ps_quote(executable)}",
        f"$psi.Arguments = {ps_quote(arguments)}",
        "$psi.UseShellExecute = $false",
        "$psi.RedirectStandardOutput = $true",
        "$psi.RedirectStandardError = $true",
        "$p = [System.Diagnostics.Process]::Start($psi)",
        f"[System.IO.File]::WriteAllText({ps_quote(base + '.pid')}, [string]$p.Id)",
        "$err = $p.StandardError.ReadToEndAsync()",
        f"$out = [System.IO.File]::Open({ps_quote(base + '.out')}, 'Create', 'Write', 'ReadWrite, Delete')",
        "$utf8 = New-Object System.Text.UTF8Encoding($false)",
        "while ($null -ne ($line = $p.StandardOutput.ReadLine())) {",
        "    $bytes = $utf8.GetBytes($line + \"`n\")",
        "    $out.Write($bytes, 0, $bytes.Length)",
        "    $out.Flush()",
        "}",
        "$out.Close()",
        "$p.WaitForExit()",
        f"[System.IO.File]::WriteAllText({ps_quote(base + '.err')}, $err.Result)",
        f"[System.IO.File]::WriteAllText({ps_quote(base + '.rc')}, [string]$p.ExitCode)",
    ]
    lines = [
        "$ErrorActionPreference = 'Stop'",
        "$env:PYTHONUNBUFFERED = '1'",
        "$env:PYTHONIOENCODING = 'utf-8'",
        f"$null = New-Item -ItemType Directory -Force -Path {ps_quote(str(PureWindowsPath(base).parent))}",
        "try {",
        *("    " + line for line in body),
        "} catch {",
        f"    [System.IO.File]::WriteAllText({ps_quote(base + '.err')}, [string]$_)",
        f"    [System.IO.File]::WriteAllText({ps_quote(base + '.rc')}, '-1')",
        "}",
    ]
    return "\n".join(lines) + "\n"


class PsexecProcess(Process):
    """A background process on a Windows node; its lines come back over SMB, it has no stdin."""

    def __init__(self, transport: "PsexecTransport", base: str, wrapper_pid: int):
        self._t = transport
        self.base = base
        self.wrapper_pid = wrapper_pid
        self._offset = 0
        self._buffer = b""
        self._child_pid: int | None = None
        self._rc: int | None = None
        self._err_text: str | None = None

    def _unc(self, suffix: str) -> str:
        return admin_share_path(self._t.node.access.host, self.base + suffix)

    def _read_small(self, suffix: str) -> str | None:
        data = self._t._files_call(lambda f: f.read_from(self._unc(suffix), 0))
        return None if data is None else data.decode("utf-8", errors="replace").strip()

    @property
    def pid(self) -> int:
        """The child's pid once the wrapper wrote it, else the wrapper's."""
        if self._child_pid is None:
            text = self._read_small(".pid")
            if text and text.isdigit():
                self._child_pid = int(text)
        return self._child_pid or self.wrapper_pid

    def _exit_code(self) -> int | None:
        if self._rc is None:
            text = self._read_small(".rc")
            if text and text.lstrip("-").isdigit():
                self._rc = int(text)
        return self._rc

    def write_line(self, line: str) -> None:
        raise NodeError(self._t.node.name, "a psexec background process has no stdin (PAExec asynchronous mode)")

    def write_lines(self, lines) -> None:
        self.write_line("")

    def _take_line(self) -> str | None:
        if b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            return line.decode("utf-8", errors="replace").rstrip("\r")
        return None

    def read_line(self, timeout: float | None) -> str | None:
        """Next stdout line; None at EOF (process ended and all read). TimeoutError when none came in time."""
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        pause = POLL_START
        while True:
            line = self._take_line()
            if line is not None:
                return line
            ended = self._exit_code() is not None  # .rc is written only after .out is closed
            data = self._t._files_call(lambda f: f.read_from(self._unc(".out"), self._offset))
            if data:
                self._offset += len(data)
                self._buffer += data
                pause = POLL_START
                continue
            if ended:
                if self._buffer:
                    rest, self._buffer = self._buffer, b""
                    return rest.decode("utf-8", errors="replace").rstrip("\r")
                self._finished()
                return None
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no output line from background process within {timeout:g}s")
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX)

    def stderr_tail(self) -> str:
        text = self._err_text
        if text is None:
            try:
                text = self._read_small(".err") or ""
            except NodeError:
                return ""
        return "\n".join(text.splitlines()[-5:])

    def _finished(self) -> None:
        """Output fully read: keep stderr, then remove the files from the node's workdir."""
        if self._err_text is None:
            try:
                self._err_text = self._read_small(".err") or ""
            except NodeError:
                self._err_text = ""
            self.remove_files()

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        pause = POLL_START
        while True:
            rc = self._exit_code()
            if rc is not None or time.monotonic() >= deadline:
                return rc
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX)

    def kill(self) -> None:
        """taskkill the child's tree; its wrapper then writes the exit code and ends. If it does not
        within KILL_GRACE, the wrapper goes too: a server never outlives its cell."""
        if self._exit_code() is not None:
            self._finished()
            return
        self._t.run(["taskkill.exe", "/PID", str(self.pid), "/T", "/F"], timeout=timeouts.PSEXEC_TASKKILL)
        if self.wait(KILL_GRACE) is None:
            if self.pid != self.wrapper_pid:
                self._t.run(["taskkill.exe", "/PID", str(self.wrapper_pid), "/T", "/F"], timeout=timeouts.PSEXEC_TASKKILL)
            self._rc = 1  # taskkill /F leaves exit code 1
        self._finished()

    def remove_files(self) -> None:
        for suffix in (".out", ".err", ".pid", ".rc"):
            try:
                self._t._files_call(lambda f: f.remove(self._unc(suffix)))
            except NodeError:
                pass


# --- the transport -------------------------------------------------------------------------------

class PsexecTransport(Transport):
    """Transport contract over pypsexec: run / spawn / put / close / probe_command."""

    def __init__(self, node, inventory=None):
        super().__init__(node, inventory)
        access = node.access
        base = access.workdir or DEFAULT_WORKDIR_BASE
        if not _DRIVE_RE.match(base.replace("/", "\\")):
            raise NodeError(node.name, f"access.workdir must be an absolute Windows path like C:\\dir, "
                                       f"not {base!r}")
        self.windows_workdir = str(PureWindowsPath(base, RUN_DIR_NAME))
        self.python_argv = [access.python] if access.python else list(DEFAULT_PYTHON)
        self._key = _registry_key(access) if access.host else None
        self._shared: _SharedClient | None = None
        self._closed = False
        self._spawned: list[PsexecProcess] = []

    # the shared Client, acquired on first use
    def _client(self) -> _SharedClient:
        if self._closed:
            raise NodeError(self.node.name, "transport already closed")
        if self._shared is None or self._shared.broken:
            if self._shared is not None:
                _release(self._key, self._shared)
            self._shared = _acquire(self.node)
            if not self._shared.swept:  # once per Client: a killed run's PAExec-<dead pid>-<host> leftovers
                self._shared.swept = True
                try:
                    self._call(paexec_sweep.sweep, SWEEP_TIMEOUT)
                except CommandTimeout:
                    raise
                except NodeError:  # tidying is best effort: the node works without it
                    pass
        return self._shared

    def _call(self, fn: Callable, timeout: float):
        """fn(client) under the Client's lock, bounded by `timeout` (+ grace); errors -> NodeError."""
        shared = self._client()
        box: dict = {}

        def work():
            try:
                with shared.lock:
                    box["value"] = fn(shared.client)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=work, name=f"psexec-{self.node.name}", daemon=True)
        thread.start()
        thread.join(timeout + CALL_GRACE)
        if thread.is_alive():
            reason = f"a psexec call did not return within {timeout + CALL_GRACE:g}s"
            with _REGISTRY_LOCK:
                shared.broken = True  # no new Client for this host until this one is retired (_retire)
                _BROKEN[self._key] = reason
            raise CommandTimeout(self.node.name, reason)
        if "error" in box:
            exc = box["error"]
            if isinstance(exc, NodeError):
                raise exc
            raise NodeError(self.node.name, f"psexec failed: {_one_line(exc)}") from None
        return box["value"]

    def _files_call(self, fn: Callable):
        shared = self._client()
        try:
            return fn(shared.files)
        except NodeError:
            raise
        except Exception as exc:
            raise NodeError(self.node.name, f"SMB file access failed: {_one_line(exc)}") from None

    @staticmethod
    def split_argv(argv: list[str]) -> tuple[str, str | None]:
        """(executable, arguments) as PAExec wants them; arguments quoted by Windows CRT rules."""
        if not argv:
            raise ValueError("empty argv")
        return argv[0], (subprocess.list2cmdline(argv[1:]) if len(argv) > 1 else None)

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> CommandResult:
        executable, arguments = self.split_argv(argv)
        seconds = max(1, int(math.ceil(timeout)))

        def go(client):
            return client.run_executable(executable, arguments=arguments, asynchronous=False,
                                         run_elevated=True, timeout_seconds=seconds, stdin=stdin)

        stdout, stderr, rc = self._call(go, timeout)
        return CommandResult(rc=int(rc), stdout=_text(stdout), stderr=error_text(_text(stderr)))

    def run_powershell(self, script: str, timeout: float) -> CommandResult:
        return self.run(powershell_argv(script), timeout)

    def spawn(self, argv: list[str]) -> PsexecProcess:
        executable, arguments = self.split_argv(argv)
        base = str(PureWindowsPath(self.windows_workdir, SPAWN_DIR, uuid.uuid4().hex[:16]))
        wrapper = powershell_argv(spawn_script(executable, arguments or "", base))
        w_exe, w_args = self.split_argv(wrapper)

        def go(client):
            return client.run_executable(w_exe, arguments=w_args, asynchronous=True, run_elevated=True)

        _, _, pid = self._call(go, self.node.access.connect_timeout)
        proc = PsexecProcess(self, base, int(pid))
        self._spawned.append(proc)
        return proc

    def put(self, local_path: str, remote_path: str) -> None:
        try:
            data = Path(local_path).read_bytes()
            unc = admin_share_path(self.node.access.host, remote_path)
        except (OSError, ValueError) as exc:
            raise NodeError(self.node.name, f"put {local_path} -> {remote_path}: {_one_line(exc)}") from None
        self._files_call(lambda f: f.write_bytes(unc, data))

    def command_line_limit(self) -> int:
        """PAExec starts the program with CreateProcess: 32,767 characters including the final NUL."""
        return CREATE_PROCESS_LIMIT

    def python(self) -> str:
        return self.python_argv[0]

    def workdir(self) -> str:
        return self.windows_workdir

    def deploy_probe(self) -> str:
        remote = str(PureWindowsPath(self.windows_workdir, PROBE_NAME))
        self.put(str(bundle.probe_file()), remote)
        unc = admin_share_path(self.node.access.host, remote)
        copied = self._files_call(lambda f: f.read_from(unc, 0))  # read back: byte for byte ours, or never run
        if copied is None or hashlib.sha256(copied).hexdigest() != bundle.probe_sha256():
            raise NodeError(self.node.name, f"the probe copied to {remote} does not match ours (sha256); not running it")
        return remote

    def probe_command(self) -> list[str]:
        """[python..., <workdir>\\probe.py] (default `py -3`), copying the probe once per Client,
        i.e. once per run and host however many transports share it."""
        remote = str(PureWindowsPath(self.windows_workdir, PROBE_NAME))
        shared = self._client()
        with self._deploy_lock:
            if remote not in shared.deployed:
                self.deploy_probe()
                shared.deployed.add(remote)
        return [*self.python_argv, remote]

    def close(self) -> None:
        if self._closed:
            return
        for proc in self._spawned:  # ended processes' files go; a running one keeps its own
            try:
                if proc._exit_code() is not None:
                    proc._finished()
            except NodeError:
                pass
        self._spawned.clear()
        self._closed = True
        if self._shared is not None:
            _release(self._key, self._shared)
            self._shared = None
