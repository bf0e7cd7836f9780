"""The transport contract: how the controller runs things on a node, whatever the wire.

Every implementation (local subprocess, ssh, psexec) offers the same five calls, all bounded by
a timeout, all failing with one-line NodeError -- so the agents and drivers never care how a
node is reached. The probe is deployed once per transport (i.e. once per node per run).

Where the probe goes (POSIX nodes): a directory made fresh for this run by `mktemp -d` (mode
0700, unguessable name) under `access.workdir` (default /tmp), never a fixed path another local
user could create first and fill with their own probe, which would then run as root. The
copy is checked (sha256 on the node) before it is ever run. What this relies on: the base
directory is /tmp (sticky) or writable only by the login user or root.
"""
from __future__ import annotations

import abc
import collections
import contextlib
import hashlib
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from harness import timeouts
from harness.errors import NodeError
from harness.node import Inventory, Node
from harness.probe import bundle

PROBE_NAME = bundle.FILE_NAME  # the probe package as one zipapp file (harness/probe/bundle.py)
DEFAULT_POSIX_WORKDIR = "/tmp"  # the base on POSIX nodes; each run's probe lives in a fresh folder below it
RUN_DIR_PREFIX = "hvsock-matrix."  # + 16 random hex digits
DEFAULT_DEADLINE = timeouts.HOUSEKEEPING  # housekeeping calls (mkdir, put) that have no timeout of their own


class CommandTimeout(NodeError):
    """A command ran past its timeout; it was killed (where the transport can) and its output kept."""

    def __init__(self, node: str, message: str, stdout: str = "", stderr: str = ""):
        super().__init__(node, message)
        self.stdout = stdout
        self.stderr = stderr


@dataclass
class CommandResult:
    rc: int
    stdout: str
    stderr: str
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Process(abc.ABC):
    """A background process on a node whose stdout lines can be read and which can be killed."""

    pid: int | None = None  # the pid on the node, when known

    @abc.abstractmethod
    def write_line(self, text: str) -> None: ...

    @abc.abstractmethod
    def read_line(self, timeout: float | None) -> str | None:
        """Next stdout line without its newline; None at EOF. Raises TimeoutError when none came in time."""

    @abc.abstractmethod
    def kill(self) -> None: ...

    @abc.abstractmethod
    def wait(self, timeout: float) -> int | None:
        """Exit code, or None if still running after `timeout` seconds."""

    def close_stdin(self) -> None:  # noqa: B027  optional: most processes need no EOF
        """Signal EOF on the process's stdin (default: nothing)."""

    def stderr_tail(self) -> str:
        """The last lines the process wrote to stderr, for error messages."""
        return ""


class LineQueue:
    """Reads a byte stream on a daemon thread into a queue of text lines (None = EOF).

    Lets read_line(timeout) work the same over a pipe, a paramiko channel or an SMB pipe.
    """

    def __init__(self, stream: IO[bytes], name: str, tail: int = 0):
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stream = stream
        self._eof = False
        self.tail: collections.deque[str] = collections.deque(maxlen=tail or 1)
        self._keep_tail = bool(tail)
        self._thread = threading.Thread(target=self._pump, name=f"lines-{name}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if self._keep_tail:
                    self.tail.append(line)
                else:
                    self._queue.put(line)
        except (OSError, ValueError, EOFError):
            pass
        except Exception:  # paramiko raises its own types on a dead channel
            pass
        finally:
            self._queue.put(None)

    def get(self, timeout: float | None) -> str | None:
        if self._eof:
            return None
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no line within {timeout}s") from None
        if line is None:
            self._eof = True
        return line

    def text(self) -> str:
        return "\n".join(self.tail)




# Characters every shell a transport may hand a command line to leaves alone: sh (POSIX sshd: $SHELL -c),
# cmd.exe (Win32-OpenSSH, contrib/win32/win32compat/w32-doexec.c do_exec_windows: `cmd.exe /c "<command>"`)
# and CommandLineToArgvW (PAExec's CreateProcess). An argument with a space or a backslash (sh reads
# an unquoted one as an escape) is double-quoted, which all three read alike as long as it holds no
# quote, no `\\` (sh halves it inside quotes) and does not end in a backslash (CommandLineToArgvW
# would read `\"` as an escaped quote).
_PLAIN_ARG = re.compile(r"^[A-Za-z0-9_./:=,+-]+$")
_QUOTABLE_ARG = re.compile(r"^[A-Za-z0-9_./:\\=,+ -]+$")


def portable_command_line(argv: list[str]) -> str:
    """The one command line that sh, `cmd.exe /c` and CommandLineToArgvW all split back into `argv`.

    ValueError for an argument that has no such form (a quote, `%`, `!`, `&`, `$`, ...): such text
    travels inside the probe's JSON requests, never on a command line.
    """
    words = []
    for arg in (str(a) for a in argv):
        if _PLAIN_ARG.match(arg):
            words.append(arg)
        elif _QUOTABLE_ARG.match(arg) and "\\\\" not in arg and not arg.endswith("\\"):
            words.append(f'"{arg}"')
        else:
            raise ValueError(f"argument {arg!r} cannot be passed alike to sh, cmd.exe and CommandLineToArgvW")
    return " ".join(words)


CMD_EXE_LIMIT = 8191  # cmd.exe's longest command line (Microsoft: "Command prompt line string limitation")


class Transport(abc.ABC):
    """How the controller reaches one node."""

    # spawn()'s process reads a stdin the controller holds (closing it is an EOF the probe acts on)
    spawn_keeps_stdin = True

    def __init__(self, node: Node, inventory: Inventory | None = None):
        self.node = node
        self.inventory = inventory
        self._probe_path: str | None = None
        self._run_dir: str | None = None  # made by make_run_dir, removed by remove_run_dir
        self._deploy_lock = threading.Lock()

    # -- the contract -----------------------------------------------------------------
    @abc.abstractmethod
    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> CommandResult: ...

    @abc.abstractmethod
    def spawn(self, argv: list[str]) -> Process: ...

    @abc.abstractmethod
    def put(self, local_path: str, remote_path: str) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def probe_command(self) -> list[str]:
        """[python, <probe path on the node>], copying the probe there the first time."""
        with self._deploy_lock:
            if self._probe_path is None:
                self._probe_path = self.deploy_probe()
        return [self.python(), self._probe_path]

    # -- helpers implementations may override -----------------------------------------
    def command_line_limit(self) -> int | None:
        """Longest command line run() can hand this node, None where none matters (POSIX ARG_MAX is far).

        Windows OpenSSH starts every command as `cmd.exe /c <command>`, and cmd.exe stops at 8191
        characters ("The command line is too long."); transports that reach Windows another way override it.
        """
        return CMD_EXE_LIMIT - len("cmd.exe /c ") if self.node.os == "windows" else None

    def python(self) -> str:
        if self.node.access.python:
            return self.node.access.python
        return "py" if self.node.os == "windows" else "python3"

    def workdir(self) -> str:
        """The base folder (as the file channel names it) under which each run makes its own folder."""
        if self.node.access.workdir:
            return self.file_path(self.node.access.workdir)
        return self.default_workdir()

    def default_workdir(self) -> str:
        return DEFAULT_POSIX_WORKDIR

    # -- the file channel (SFTP, SMB, the local filesystem): no command runs for any of it --
    def file_path(self, path: str) -> str:
        """A node path as the file channel names it (SFTP on Windows: /C:/Users/x)."""
        return path

    def node_path(self, path: str) -> str:
        """A file-channel path as a program on the node names it (Windows: C:\\Users\\x)."""
        return path

    def run_folder(self) -> str | None:
        """This run's folder on the node, as a program there names it (None before the probe is deployed)."""
        return self.node_path(self._run_dir) if self._run_dir else None

    def put_bytes(self, node_path: str, data: bytes) -> None:
        """Write a small file on the node (a path as a program there names it), over the file channel."""
        try:
            self.write_file(self.file_path(node_path), data)
        except OSError as exc:
            raise self.fail(f"cannot write {node_path}: {exc}") from None

    def make_private_dir(self, path: str) -> None:
        """Create exactly `path`, owner-only where the node has modes; FileExistsError if it exists."""
        raise NotImplementedError

    def write_file(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def read_file(self, path: str) -> bytes:
        raise NotImplementedError

    def remove_file(self, path: str) -> None:
        raise NotImplementedError

    def remove_dir(self, path: str) -> None:
        """Remove an empty folder."""
        raise NotImplementedError

    def make_run_dir(self) -> str:
        """A new folder for this run on the node: a random name (never a fixed path another local user
        could create first and fill with their own probe), made by one exclusive mkdir, owner-only."""
        base = self.workdir().rstrip("/") or "/"
        last: Exception | None = None
        try:  # a workdir the inventory names may not exist yet: made owner-only, like the run folder
            self.make_private_dir(base)
        except FileExistsError:
            pass
        except OSError as exc:
            raise self.fail(f"cannot make the workdir {self.node_path(base)}: {exc}") from None
        for _ in range(5):
            path = f"{base}/{RUN_DIR_PREFIX}{secrets.token_hex(8)}"
            try:
                self.make_private_dir(path)
            except FileExistsError as exc:  # never reuse a folder we did not make
                last = exc
                continue
            except OSError as exc:
                raise self.fail(f"cannot make a run folder under {self.node_path(base)}: {exc}") from None
            self._run_dir = path
            return path
        raise self.fail(f"cannot make a run folder under {self.node_path(base)}: {last}")

    def remove_run_dir(self) -> None:
        """The node is left as it was found: the run's own folder goes when the transport closes.

        Only what deploy_probe put there, in the folder make_run_dir created: the probe file, then the
        (then empty) folder, over the file channel. Best effort: a node that is gone keeps it.
        """
        with self._deploy_lock:
            path, self._run_dir, self._probe_path = self._run_dir, None, None
        if path is None:
            return
        for step in (lambda: self.remove_file(f"{path}/{PROBE_NAME}"), lambda: self.remove_dir(path)):
            with contextlib.suppress(Exception):  # closing never fails a run
                step()

    def deploy_probe(self) -> str:
        """Make the run folder, put the probe, read it back and compare its sha256 here, on the controller.

        The read-back is checked before the probe ever runs: a probe that reported its own hash would
        already have run. The file channel moves bytes only, so this is one code path on every OS.
        """
        remote = self.make_run_dir() + "/" + PROBE_NAME
        data = bundle.probe_bytes()
        try:
            self.write_file(remote, data)
            copied = self.read_file(remote)
        except OSError as exc:
            raise self.fail(f"cannot copy the probe to {self.node_path(remote)}: {exc}") from None
        got = hashlib.sha256(copied).hexdigest()
        if got != bundle.probe_sha256():
            raise self.fail(f"the probe copied to {self.node_path(remote)} does not match ours (sha256 {got[:12]}, "
                            f"expected {bundle.probe_sha256()[:12]}); not running it")
        return self.node_path(remote)

    def fail(self, message: object) -> NodeError:
        return NodeError(self.node.name, str(message))


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout`; for remote state that has no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
