"""Local transport: the controller's own machine, optionally inside a network namespace.

`Access.netns` prefixes every command with `ip netns exec <netns>`, which execs the command in
place, so the pid we hold is the real process and kill() reaches it.

Children get an environment built from an allow-list (`child_env`), never the controller's
whole environment: an exported HVSOCK_MATRIX_LAB_NODE=1 would otherwise silence the probe's own
AF_VSOCK refusal on this machine, and password_env values would leak into every command.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import IO

from harness import timeouts
from harness.probe import bundle
from harness.transports.base import CommandResult, CommandTimeout, LineQueue, Process, Transport

# what a child needs to find programs, speak the locale and write temp files -- nothing else
ENV_ALLOWED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "PYTHONPATH",
               "PYTHONHOME", "VIRTUAL_ENV", "SYSTEMROOT", "COMSPEC", "PATHEXT", "TEMP", "TMP", "WINDIR")
ENV_ALLOWED_PREFIXES = ("LC_",)


def child_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every local child: allow-listed names only (never the lab-node marker)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k in ENV_ALLOWED or k.startswith(ENV_ALLOWED_PREFIXES)}


class LocalProcess(Process):
    def __init__(self, popen: subprocess.Popen, name: str):
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None  # spawn pipes all three
        self.popen = popen
        self.stdin: IO[bytes] = popen.stdin
        self.pid = popen.pid
        self._out = LineQueue(popen.stdout, f"{name}-out")
        self._err = LineQueue(popen.stderr, f"{name}-err", tail=50)

    def write_line(self, text: str) -> None:
        try:
            self.stdin.write((text.rstrip("\n") + "\n").encode("utf-8"))
            self.stdin.flush()
        except (OSError, ValueError) as exc:
            raise BrokenPipeError(f"process {self.pid} stdin closed: {exc}") from None

    def read_line(self, timeout: float | None) -> str | None:
        return self._out.get(timeout)

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)  # its own session: children go too
            except (ProcessLookupError, PermissionError):
                self.popen.kill()
        self.wait(timeouts.PROCESS_EXIT)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self) -> str:
        return self._err.text()


class LocalTransport(Transport):
    """subprocess on the controller (or in Access.netns)."""

    def prefix(self) -> list[str]:
        ns = self.node.access.netns
        return ["ip", "netns", "exec", ns] if ns else []

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> CommandResult:
        start = time.monotonic()
        try:
            proc = subprocess.Popen(self.prefix() + list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, env=child_env())
        except OSError as exc:
            raise self.fail(f"cannot run {argv[0]}: {exc}") from None
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise CommandTimeout(self.node.name, f"{argv[0]} still running after {timeout:g}s; killed",
                                 out.decode("utf-8", "replace"), err.decode("utf-8", "replace")) from None
        return CommandResult(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                             round((time.monotonic() - start) * 1000, 3))

    def spawn(self, argv: list[str]) -> Process:
        try:
            popen = subprocess.Popen(self.prefix() + list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True, env=child_env())
        except OSError as exc:
            raise self.fail(f"cannot start {argv[0]}: {exc}") from None
        return LocalProcess(popen, self.node.name)

    def put(self, local_path: str, remote_path: str) -> None:
        try:
            os.makedirs(os.path.dirname(remote_path) or ".", exist_ok=True)
            tmp = f"{remote_path}.{os.getpid()}.tmp"
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, remote_path)  # concurrent workers never see half a file
        except OSError as exc:
            raise self.fail(f"cannot copy {local_path} to {remote_path}: {exc}") from None

    def python(self) -> str:
        return self.node.access.python or sys.executable

    def deploy_probe(self) -> str:
        """Same filesystem: the zipapp built for this run is used in place, no copy (unless a workdir is set)."""
        if self.node.access.workdir:
            return super().deploy_probe()
        return str(bundle.probe_file())

    # -- the file channel: this machine's own filesystem ----------------------------------------
    def make_private_dir(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        os.mkdir(path, 0o700)  # exclusive: FileExistsError if anyone made it first

    def write_file(self, path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def remove_file(self, path: str) -> None:
        os.unlink(path)

    def remove_dir(self, path: str) -> None:
        os.rmdir(path)

    def close(self) -> None:
        self.remove_run_dir()
