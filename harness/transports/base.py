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
import queue
import threading
import time
from dataclasses import dataclass
from typing import IO, Callable

from harness.errors import NodeError
from harness.node import Inventory, Node
from harness import timeouts
from harness.probe import bundle

PROBE_NAME = bundle.FILE_NAME  # the probe package as one zipapp file (harness/probe/bundle.py)
DEFAULT_POSIX_WORKDIR = "/tmp"  # the base; each run's probe lives in a fresh mktemp -d below it
RUN_DIR_TEMPLATE = "hvsock-matrix.XXXXXXXXXX"
_MAKE_RUN_DIR = 'umask 077 && mkdir -p -- "$1" && exec mktemp -d -- "$1/$2"'
_SHA256 = ('sha256sum -- "$2" 2>/dev/null || exec "$1" -c '
           '"import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],\'rb\').read()).hexdigest())" "$2"')
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

    def close_stdin(self) -> None:
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


def one_line(text: object, limit: int = 300) -> str:
    """Squash any error text into one short line (NodeError messages are one line)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


CMD_EXE_LIMIT = 8191  # cmd.exe's longest command line (Microsoft: "Command prompt line string limitation")


class Transport(abc.ABC):
    """How the controller reaches one node."""

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
        """The base directory under which each run makes its own directory."""
        return self.node.access.workdir or DEFAULT_POSIX_WORKDIR

    def make_run_dir(self) -> str:
        """A new owner-only directory for this run on the node (mktemp -d), its path."""
        base = self.workdir().rstrip("/") or "/"
        result = self.run(["sh", "-c", _MAKE_RUN_DIR, "hvsock-matrix", base, RUN_DIR_TEMPLATE], timeout=DEFAULT_DEADLINE)
        path = result.stdout.strip()
        if result.rc != 0 or not path.startswith(base.rstrip("/") + "/hvsock-matrix.") or "\n" in path:
            raise self.fail(f"cannot make a run directory under {base}: {result.stderr.strip() or path or result.rc}")
        self._run_dir = path
        return path

    def remove_run_dir(self) -> None:
        """The node is left as it was found: the run's own directory goes when the transport closes.

        Only the directory make_run_dir created (checked there) is removed; best effort, since a
        node that is gone keeps it (owner-only, under its temp folder).
        """
        with self._deploy_lock:
            path, self._run_dir, self._probe_path = self._run_dir, None, None
        if path is None:
            return
        try:
            self.run(["rm", "-rf", "--", path], timeout=DEFAULT_DEADLINE)
        except Exception:  # closing never fails a run
            pass

    def deploy_probe(self) -> str:
        remote = self.make_run_dir() + "/" + PROBE_NAME
        self.put(str(bundle.probe_file()), remote)
        self.verify_copy(remote)
        return remote

    def verify_copy(self, remote: str) -> None:
        """The probe on the node is byte for byte ours, or it is never run."""
        want = bundle.probe_sha256()
        result = self.run(["sh", "-c", _SHA256, "sha256", self.python(), remote], timeout=DEFAULT_DEADLINE)
        got = result.stdout.split()[0] if result.stdout.split() else ""
        if got != want:
            raise self.fail(f"the probe copied to {remote} does not match ours (sha256 {got[:12] or 'unknown'}, "
                            f"expected {want[:12]}); not running it")

    def fail(self, message: object) -> NodeError:
        return NodeError(self.node.name, one_line(message))


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout`; for remote state that has no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
