"""Background processes on a Windows node over psexec: a wrapper started asynchronously, read back over SMB.

PAExec `asynchronous=True` cannot stream output, so a small PowerShell wrapper writes the child's
stdout lines, pid and exit code to files under the node's workdir, and the controller reads them
back over SMB (admin share).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import partial
from pathlib import PureWindowsPath
from typing import Any, Protocol

from harness import timeouts
from harness.errors import NodeError
from harness.hyperv.powershell import ps_quote
from harness.node import Node
from harness.transports.base import CommandResult, Process
from harness.transports.psexec.files import admin_share_path


def _remove(unc: str, files: Any) -> None:
    files.remove(unc)


POLL_START, POLL_MAX = 0.05, 0.5
KILL_GRACE = timeouts.PSEXEC_KILL_GRACE  # for a killed child's wrapper to write its exit code
SPAWN_DIR = "spawn"


class NodeCalls(Protocol):
    """What a background process needs from its transport: its node, a command, a file call."""

    node: Node

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> CommandResult: ...

    def _files_call(self, fn: Callable[[Any], Any]) -> Any: ...


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

    def __init__(self, transport: NodeCalls, base: str, wrapper_pid: int):
        self._t = transport
        self.base = base
        self.wrapper_pid = wrapper_pid
        self._offset = 0
        self._buffer = b""
        self._child_pid: int | None = None
        self._rc: int | None = None
        self._err_text: str | None = None

    def _unc(self, suffix: str) -> str:
        return admin_share_path(self._t.node.access.host or "", self.base + suffix)

    def _read_small(self, suffix: str) -> str | None:
        data = self._t._files_call(lambda f: f.read_from(self._unc(suffix), 0))
        return None if data is None else data.decode("utf-8", errors="replace").strip()

    @property
    def pid(self) -> int:  # type: ignore[override]  # Process.pid is a plain attribute there
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
                self._t.run(["taskkill.exe", "/PID", str(self.wrapper_pid), "/T", "/F"],
                            timeout=timeouts.PSEXEC_TASKKILL)
            self._rc = 1  # taskkill /F leaves exit code 1
        self._finished()

    def remove_files(self) -> None:
        for suffix in (".out", ".err", ".pid", ".rc"):
            unc = self._unc(suffix)
            with contextlib.suppress(NodeError):
                self._t._files_call(partial(_remove, unc))


