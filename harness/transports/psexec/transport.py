"""The psexec transport: Windows nodes reached over SMB with pypsexec (PAExec service), no agent installed.

It puts together the shared Client pool (clients.py), the admin-share files (files.py) and the
background processes (process.py) behind the Transport contract. PowerShell always goes as
`-EncodedCommand` (harness.hyperv.powershell), argv quoted with subprocess.list2cmdline (the
Windows CRT rules).
"""
from __future__ import annotations

import hashlib
import logging
import math
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path, PureWindowsPath

from harness import timeouts
from harness.errors import NodeError
from harness.hyperv.clixml import error_text
from harness.hyperv.powershell import powershell_argv
from harness.probe import bundle
from harness.transports.base import PROBE_NAME, CommandResult, CommandTimeout, Transport
from harness.transports.psexec import clients, paexec_sweep
from harness.transports.psexec.clients import SharedClient, exception_text
from harness.transports.psexec.files import admin_share_path, is_drive_path
from harness.transports.psexec.process import SPAWN_DIR, PsexecProcess, spawn_script

# Per run, never a fixed path: a folder with a fresh unguessable name under the node's
# C:\Windows\Temp (or access.workdir), so no local user can create it first and plant a
# probe there that would run elevated. Relies on C:\Windows\Temp's default ACL: users may
# create their own entries but not touch an administrator's.
RUN_DIR_NAME = f"hvsock-matrix-{uuid.uuid4().hex}"
DEFAULT_WORKDIR_BASE = r"C:\Windows\Temp"
DEFAULT_WORKDIR = DEFAULT_WORKDIR_BASE + "\\" + RUN_DIR_NAME
DEFAULT_PYTHON = ["py", "-3"]
SWEEP_TIMEOUT = timeouts.PSEXEC_SWEEP  # listing and removing a killed run's PAExec leftovers
CREATE_PROCESS_LIMIT = 32767 - 1  # lpCommandLine, without its terminating NUL
# PAExec ends a program that outlives timeout_seconds with TerminateProcess(hProcess, (DWORD)-10) and
# answers with that exit code (Remote.cpp HandleMsg, MSGID_START_APP: WAIT_TIMEOUT); pypsexec reads it
# as an unsigned 32-bit value (paexec.py PAExecReturnBuffer)
PAEXEC_TIMED_OUT = 0xFFFFFFF6
LOGGED_CHARS = 2000  # a DEBUG line shows this much of a command line (EncodedCommand scripts are long)

log = logging.getLogger(__name__)


def _shown(executable: str, arguments: str | None) -> str:
    line = subprocess.list2cmdline([executable]) + (" " + arguments if arguments else "")
    return line if len(line) <= LOGGED_CHARS else line[:LOGGED_CHARS] + f"... ({len(line)} chars)"


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace").replace("\r\n", "\n")


class PsexecTransport(Transport):
    """Transport contract over pypsexec: run / spawn / put / close / probe_command."""

    spawn_keeps_stdin = False  # a background PAExec child's stdin is not the controller's (no EOF to send)

    def __init__(self, node, inventory=None):
        super().__init__(node, inventory)
        access = node.access
        base = access.workdir or DEFAULT_WORKDIR_BASE
        if not is_drive_path(base):
            raise NodeError(node.name, f"access.workdir must be an absolute Windows path like C:\\dir, "
                                       f"not {base!r}")
        self.windows_workdir = str(PureWindowsPath(base, RUN_DIR_NAME))
        self.python_argv = [access.python] if access.python else list(DEFAULT_PYTHON)
        self._key = clients.registry_key(access) if access.host else None
        self._shared: SharedClient | None = None
        self._closed = False
        self._spawned: list[PsexecProcess] = []

    # the shared Client, acquired on first use
    def _client(self) -> SharedClient:
        if self._closed:
            raise NodeError(self.node.name, "transport already closed")
        if self._shared is not None and self._shared.broken:
            broken, self._shared = self._shared, None
            clients.release(broken)  # exactly once: the next line may fail while it is being retired
        if self._shared is None:
            self._shared = clients.acquire(self.node)
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
        """fn(client) once this call owns the host's Client, bounded by `timeout` (+ grace) from then on."""
        return clients.call(self._client(), fn, timeout, self.node.name)

    def _files_call(self, fn: Callable):
        """fn(files) on the host's SMB files session, bounded (timeouts.PSEXEC_FILE_CALL)."""
        return clients.files_call(self._client(), fn, self.node.name)

    @staticmethod
    def split_argv(argv: list[str]) -> tuple[str, str | None]:
        """(executable, arguments) as PAExec wants them; arguments quoted by Windows CRT rules."""
        if not argv:
            raise ValueError("empty argv")
        return argv[0], (subprocess.list2cmdline(argv[1:]) if len(argv) > 1 else None)

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> CommandResult:
        executable, arguments = self.split_argv(argv)
        seconds = max(1, math.ceil(timeout))
        log.debug("psexec %s: run %s (timeout %ss)", self.node.name, _shown(executable, arguments), seconds)

        def go(client):
            return client.run_executable(executable, arguments=arguments, asynchronous=False,
                                         run_elevated=True, timeout_seconds=seconds, stdin=stdin)

        stdout, stderr, rc = self._call(go, timeout)
        out, err = _text(stdout), error_text(_text(stderr))
        if int(rc) == PAEXEC_TIMED_OUT:
            raise CommandTimeout(self.node.name, f"killed by PAExec at its timeout ({seconds}s)", out, err)
        return CommandResult(rc=int(rc), stdout=out, stderr=err)

    def run_powershell(self, script: str, timeout: float) -> CommandResult:
        return self.run(powershell_argv(script), timeout)

    def spawn(self, argv: list[str]) -> PsexecProcess:
        executable, arguments = self.split_argv(argv)
        base = str(PureWindowsPath(self.windows_workdir, SPAWN_DIR, uuid.uuid4().hex[:16]))
        wrapper = powershell_argv(spawn_script(executable, arguments or "", base))
        w_exe, w_args = self.split_argv(wrapper)
        log.debug("psexec %s: spawn %s (wrapper %s, output under %s)", self.node.name,
                  _shown(executable, arguments), w_exe, base)
        self._client().run_dirs.add(admin_share_path(self.node.access.host or "", self.windows_workdir))

        def go(client):
            return client.run_executable(w_exe, arguments=w_args, asynchronous=True, run_elevated=True)

        _, _, pid = self._call(go, self.node.access.connect_timeout)
        proc = PsexecProcess(self, base, int(pid))
        self._spawned.append(proc)
        return proc

    def put(self, local_path: str, remote_path: str) -> None:
        try:
            data = Path(local_path).read_bytes()
            unc = admin_share_path(self.node.access.host or "", remote_path)
        except (OSError, ValueError) as exc:
            raise NodeError(self.node.name, f"put {local_path} -> {remote_path}: {exception_text(exc)}") from None
        log.debug("psexec %s: put %s -> %s (%d bytes)", self.node.name, local_path, unc, len(data))
        self._files_call(lambda f: f.write_bytes(unc, data))

    def run_folder(self) -> str:
        return self.windows_workdir

    def put_bytes(self, node_path: str, data: bytes) -> None:
        """A small file on the node over SMB (the admin share): e.g. a one-shot server's stop file."""
        unc = admin_share_path(self.node.access.host or "", node_path)
        log.debug("psexec %s: put %d bytes -> %s", self.node.name, len(data), unc)
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
        unc = admin_share_path(self.node.access.host or "", remote)
        copied = self._files_call(lambda f: f.read_from(unc, 0))  # read back: byte for byte ours, or never run
        if copied is None or hashlib.sha256(copied).hexdigest() != bundle.probe_sha256():
            raise NodeError(self.node.name,
                            f"the probe copied to {remote} does not match ours (sha256); not running it")
        return remote

    def probe_command(self) -> list[str]:
        """[python..., <workdir>\\probe.pyz] (default `py -3`), copying the probe once per Client,
        i.e. once per run and host however many transports share it."""
        remote = str(PureWindowsPath(self.windows_workdir, PROBE_NAME))
        shared = self._client()
        with self._deploy_lock:
            shared.run_dirs.add(admin_share_path(self.node.access.host or "", self.windows_workdir))  # see retire
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
            shared, self._shared = self._shared, None
            clients.release(shared)
