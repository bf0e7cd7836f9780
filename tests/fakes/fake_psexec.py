"""FakePsexecClient and FakeSmbShare: stand-ins for pypsexec's Client and a node's SMB admin share.

The fake Client records every call (constructor arguments, connect, create_service,
run_executable with all keyword arguments, remove_service, disconnect, cleanup) and hands
run_executable to a handler -- a FakeHyperVLab, or a lambda in a unit test.

Faithful to pypsexec 0.3.0 where the harness depends on it:
- naming (pypsexec/client.py Client.__init__): service, exe and pipes are named after the
  controller's pid and hostname only, `PAExec-<pid>-<host>`: every Client of one process gets the
  same names on a given server;
- create_service (client.py Client.create_service): first deletes an existing service of that name
  (scmr.py Service.delete: stop, then DeleteService), copies `<name>.exe` to ADMIN$, creates it;
- remove_service (client.py Client.remove_service): deletes the service of that name and its exe,
  whoever created them;
- cleanup (client.py Client.cleanup): deletes every service and exe whose name starts with PAExec.
- disconnect (client.py Client.disconnect): closes the SCMR handle, then
  `connection.disconnect(close=False)`;
- the SMB connection (smbprotocol connection.py): Connection.connect(timeout) bounds the TCP connect
  and the negotiate only; Session.connect() waits for its answer without a timeout (receive() with
  timeout=None), i.e. until the receive worker gives up after two keep-alive periods (~2 x 600 s,
  _process_message_thread). `FakePsexecClient.stalled` names servers that never answer the session
  setup: connect() then blocks until the connection is closed under it (Connection.disconnect with
  close=False -> Tcp.close, the worker ends and sets every outstanding request's event, and the
  waiting receive() raises SMBConnectionClosed from _check_worker_running), as the real one does;
- runs on one Client are not safe at once: PAExec keeps one settings entry per unique id
  (Remote.cpp HandleMsg, gRemoteSettingsMap[msg.m_uniqueProcessID]) and creates its output pipes as
  `PAExecOut<caller><pid>` (ConsoleRedir.cpp CreateIOPipesInService), both the same for every run of a
  Client: `max_parallel_runs` records any overlap so tests can assert there was none.
- a run that outlives timeout_seconds answers exit code (DWORD)-10 = 0xFFFFFFF6 (Remote.cpp HandleMsg,
  MSGID_START_APP: WAIT_TIMEOUT -> TerminateProcess(hProcess, -10); pypsexec paexec.py
  PAExecReturnBuffer unpacks it unsigned) -- here once the handler returns, PAExec answers at the bound;
- stdin with asynchronous=True is refused with PypsexecException (client.py Client.run_executable).
Each server's Service Control Manager is a FakeServiceManager, which records a service deleted
while a Client was still running a process through it (what breaks a real node).
Not modelled: SMB/DCE-RPC wire errors beyond the closed connection, PAExec's own pipes, pypsexec's
three tries at the main pipe (client.py run_executable: 5 s apart).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import ClassVar


def split_windows_cmdline(text: str) -> list[str]:
    """The C runtime's rules for the arguments after the program name (the inverse of
    subprocess.list2cmdline), as a Windows program parses PAExec's `arguments`: an oracle written apart
    from harness/command_line.py on purpose."""
    args: list[str] = []
    cur: list[str] = []
    in_quotes = False
    started = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            n = 0
            while i < len(text) and text[i] == "\\":
                n += 1
                i += 1
            if i < len(text) and text[i] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                    i += 1
            else:
                cur.append("\\" * n)
            started = True
            continue
        if c == '"':
            in_quotes = not in_quotes
            started = True
            i += 1
            continue
        if c in " \t" and not in_quotes:
            if started:
                args.append("".join(cur))
                cur, started = [], False
            i += 1
            continue
        cur.append(c)
        started = True
        i += 1
    if started:
        args.append("".join(cur))
    return args


class FakeServiceManager:
    """One Windows machine's services and ADMIN$ files, as pypsexec's Clients change them."""

    machines: ClassVar[dict[str, FakeServiceManager]] = {}  # by server name (reset by tests)

    def __init__(self):
        self.services: dict[str, FakePsexecClient] = {}  # service name -> the Client that created it
        self.exes: set[str] = set()  # files in C:\Windows (ADMIN$)
        self.deleted_while_busy: list[str] = []  # a running Client's service deleted under it
        self.log: list[tuple[str, str]] = []  # (create|delete, service name)

    @classmethod
    def of(cls, server: str) -> FakeServiceManager:
        return cls.machines.setdefault(server.lower(), cls())

    def delete(self, name: str) -> None:
        owner = self.services.pop(name, None)
        if owner is not None:
            self.log.append(("delete", name))
            if owner.active_runs:
                self.deleted_while_busy.append(name)
        self.exes.discard(name + ".exe")


class FakeConnection:
    """smbprotocol.connection.Connection as far as a stalled peer shows it (see the module docstring)."""

    STALL_CAP = 30.0  # a stalled fake gives up by itself after this long, so no test can hang on it

    def __init__(self, server: str):
        self.server = server
        self.closed = threading.Event()
        self.disconnects: list[bool] = []  # the close= argument of each disconnect

    def disconnect(self, close=True, timeout=None):
        """connection.py Connection.disconnect: close=False closes only the transport (Tcp.close)."""
        self.disconnects.append(close)
        self.closed.set()

    def check(self) -> None:
        """connection.py Connection._check_worker_running on a closed transport."""
        if self.closed.is_set():
            from smbprotocol.exceptions import SMBConnectionClosed

            raise SMBConnectionClosed("SMB socket was closed, cannot send or receive any more data")

    def wait_for_answer_that_never_comes(self) -> None:
        """connection.py receive(request, timeout=None) to a silent server: ends only when closed."""
        self.closed.wait(self.STALL_CAP)
        self.check()
        raise TimeoutError(f"fake stall of {self.server} capped at {self.STALL_CAP:g}s")


class FakePsexecClient:
    """Records calls like pypsexec.client.Client would receive them; never talks to a network."""

    created: ClassVar[list[FakePsexecClient]] = []  # every instance, in creation order (reset by tests)
    stalled: ClassVar[set[str]] = set()  # servers whose SMB session setup is never answered (reset by tests)
    connect_seconds: ClassVar[float] = 0.0  # how long a (not stalled) connect takes (reset by tests)
    _lock = threading.Lock()

    def __init__(self, server, username=None, password=None, port=445, encrypt=True, handler: Callable | None = None):
        self.service_name = f"PAExec-{os.getpid()}-{socket.gethostname()}"  # client.py Client.__init__
        self.scm = FakeServiceManager.of(server)
        self.server = server
        self.username = username
        self.password = password
        self.port = port
        self.encrypt = encrypt
        self.handler = handler or (lambda client, call: (b"", b"", 0))
        self.calls: list[tuple[str, dict]] = [("__init__", {"server": server, "username": username, "port": port,
                                                            "encrypt": encrypt})]
        self.connection = FakeConnection(server)  # client.py Client.__init__: self.connection
        self.connected = False
        self.service = False
        self.active_runs = 0
        self.max_parallel_runs = 0
        with FakePsexecClient._lock:
            FakePsexecClient.created.append(self)

    def connect(self, timeout=60):
        """client.py Client.connect: connection.connect(timeout), session.connect(), SCMR open."""
        self.calls.append(("connect", {"timeout": timeout}))
        self.connection.check()
        time.sleep(FakePsexecClient.connect_seconds)
        if self.server.lower() in FakePsexecClient.stalled:
            self.connection.wait_for_answer_that_never_comes()  # session.connect(): receive() without timeout
        self.connected = True

    def create_service(self):
        assert self.connected, "create_service before connect"
        self.calls.append(("create_service", {}))
        with FakePsexecClient._lock:
            self.scm.delete(self.service_name)  # "Ensuring service is deleted before starting"
            self.scm.exes.add(self.service_name + ".exe")
            self.scm.services[self.service_name] = self
            self.scm.log.append(("create", self.service_name))
        self.service = True

    def run_executable(self, executable, arguments=None, processors=None, asynchronous=False, load_profile=True,
                       interactive_session=0, interactive=False, run_elevated=False, run_limited=False,
                       username=None, password=None, use_system_account=False, working_dir=None,
                       show_ui_on_win_logon=False, priority=32, remote_log_path=None, timeout_seconds=0,
                       stdout=None, stderr=None, stdin=None, wow64=False):
        assert self.service, "run_executable before create_service"
        if self.scm.services.get(self.service_name) is not self:
            raise RuntimeError(f"PAExec service {self.service_name} was deleted by another Client")
        if stdin is not None and asynchronous:
            from pypsexec.exceptions import PypsexecException  # client.py Client.run_executable

            raise PypsexecException("Cannot send stdin data on an interactive or asynchronous process")
        self.connection.check()
        call = {"executable": executable, "arguments": arguments, "asynchronous": asynchronous,
                "run_elevated": run_elevated, "timeout_seconds": timeout_seconds, "stdin": stdin}
        self.calls.append(("run_executable", call))
        with FakePsexecClient._lock:
            self.active_runs += 1
            self.max_parallel_runs = max(self.max_parallel_runs, self.active_runs)
        started = time.monotonic()
        try:
            stdout, stderr, rc = self.handler(self, call)
        finally:
            with FakePsexecClient._lock:
                self.active_runs -= 1
        if not asynchronous and timeout_seconds and time.monotonic() - started > timeout_seconds:
            # PAExec Remote.cpp HandleMsg: WAIT_TIMEOUT -> TerminateProcess(hProcess, (DWORD)-10), and that
            # exit code is the answer; pypsexec unpacks it unsigned (paexec.py PAExecReturnBuffer)
            return stdout, stderr, 0xFFFFFFF6
        return stdout, stderr, rc

    def remove_service(self):
        self.calls.append(("remove_service", {}))
        self.connection.check()
        with FakePsexecClient._lock:
            self.scm.delete(self.service_name)  # by name: whichever Client created it
        self.service = False

    def disconnect(self):
        """client.py Client.disconnect: SCMR handle closed, then connection.disconnect(close=False)."""
        self.calls.append(("disconnect", {}))
        self.connection.disconnect(close=False)
        self.connected = False

    def cleanup(self):
        self.calls.append(("cleanup", {}))
        with FakePsexecClient._lock:
            for name in [n for n in self.scm.services if n.lower().startswith("paexec")]:
                self.scm.delete(name)
            self.scm.exes = {e for e in self.scm.exes if not e.lower().startswith("paexec-")}

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class FakeSmbShare:
    """Files of every fake Windows machine, keyed by UNC path (case-insensitive, like NTFS/SMB)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.sessions: list[dict] = []
        self.removed_trees: list[str] = []  # remove_tree calls, in order
        self.aborts = 0

    def session(self, server, username, password, port, timeout) -> FakeSmbShare:
        """Used as harness.transports.psexec.clients.files_factory."""
        self.sessions.append({"server": server, "username": username, "port": port})
        return self

    def write_bytes(self, unc: str, data: bytes) -> None:
        with self.lock:
            self.files[unc.lower()] = bytes(data)

    def append(self, unc: str, data: bytes) -> None:
        with self.lock:
            self.files[unc.lower()] = self.files.get(unc.lower(), b"") + data

    def read_from(self, unc: str, offset: int) -> bytes | None:
        with self.lock:
            data = self.files.get(unc.lower())
        return None if data is None else data[offset:]

    def remove(self, unc: str) -> None:
        with self.lock:
            self.files.pop(unc.lower(), None)

    def remove_tree(self, unc: str) -> None:
        """smbclient.shutil.rmtree(ignore_errors=True): the folder and everything below it."""
        prefix = unc.lower().rstrip("\\") + "\\"
        with self.lock:
            self.removed_trees.append(unc)
            for key in [k for k in self.files if k.startswith(prefix)]:
                del self.files[key]

    def abort(self) -> None:
        self.aborts += 1

    def close(self) -> None:
        pass

    def exists(self, unc: str) -> bool:
        return unc.lower() in self.files
