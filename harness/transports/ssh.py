"""SSH transport (paramiko): one cached connection per node, rebuilt once when it died.

Honours ~/.ssh/config (HostName, Port, User, IdentityFile, UserKnownHostsFile, ProxyJump),
inventory jump hosts (another node: a direct-tcpip channel through the jump's own cached
connection), ssh-agent and key files. Host keys are checked against known_hosts with
RejectPolicy unless the inventory says `accept-new` (learn and save) or `ignore`.

The probe is deployed over SFTP (transports/base.py deploy_probe: an exclusive mkdir of a random
folder, put, read back, sha256 compared here) and started as one plain command line that sh and
Win32-OpenSSH's `cmd.exe /c` read alike (base.portable_command_line): no shell tool ever runs for
it, on any OS. It is ended by its own stdin reaching EOF (the channel closed), never by a remote
`kill`. Other programs (the socat and command drivers) on POSIX nodes still run as
`sh -c 'echo <marker> $$; exec "$@"'`, so one that outlives its timeout is killed on the node;
on Windows nodes they run as their list2cmdline command line and are abandoned with the channel.
A node that is a network namespace of another (inventory `of:`) prefixes every command, the
probe's too, with `ip netns exec <ns>`.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import socket
import subprocess
import threading
import time

import paramiko

from harness import timeouts
from harness.node import Access, Inventory, Node
from harness.secrets import register as register_secret
from harness.transports.base import (
    DEFAULT_DEADLINE,
    CommandResult,
    CommandTimeout,
    LineQueue,
    Process,
    Transport,
    portable_command_line,
)

PID_MARKER = "HVSOCK_MATRIX_PID"
_WRAPPER = f'echo "{PID_MARKER} $$"; exec "$@"'
_CONNECTION_ERRORS = (paramiko.SSHException, EOFError, OSError, socket.timeout)


class _IgnorePolicy(paramiko.MissingHostKeyPolicy):
    """host_key_policy: ignore -- accept any key, remember nothing (the inventory asked for it)."""

    def missing_host_key(self, client, hostname, key):
        return


def _posix_command(argv: list[str]) -> str:
    return shlex.join(["sh", "-c", _WRAPPER, "hvsock"] + [str(a) for a in argv])


def _parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """'user@host:port' (first hop of a ProxyJump list) -> (user, host, port)."""
    first = spec.split(",")[0].strip()
    user = None
    if "@" in first:
        user, first = first.rsplit("@", 1)
    port = None
    if first.count(":") == 1:
        first, p = first.split(":")
        port = int(p)
    return user, first, port


class SSHProcess(Process):
    """A command on one session channel: stdout lines, stdin lines.

    kill(): a wrapped POSIX program by its remote pid; the probe (posix=False here) by EOF on its
    stdin and the channel's close, which ends its session (probe/session.py read_lines).
    """

    def __init__(self, transport: SSHTransport, chan: paramiko.Channel, posix: bool):
        self._transport = transport
        self._chan = chan
        self._posix = posix
        self._marker_seen = not posix
        self._pending: str | None = None  # a first line that was not the pid marker
        self._out = LineQueue(chan.makefile("rb"), f"{transport.node.name}-out")
        self._err = LineQueue(chan.makefile_stderr("rb"), f"{transport.node.name}-err", tail=50)
        self._lock = threading.Lock()

    def _take_marker(self, timeout: float | None) -> None:
        with self._lock:
            if self._marker_seen:
                return
            line = self._out.get(timeout)
            self._marker_seen = True
            if line is not None and line.startswith(PID_MARKER):
                self.pid = int(line.split()[1])
            elif line is not None:
                self._pending = line

    def read_line(self, timeout: float | None) -> str | None:
        start = time.monotonic()
        self._take_marker(timeout)
        pending = self._pending
        if pending is not None:
            self._pending = None
            return pending
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
        return self._out.get(left)

    def write_line(self, text: str) -> None:
        try:
            self._chan.sendall((text.rstrip("\n") + "\n").encode("utf-8"))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise BrokenPipeError(f"channel to {self._transport.node.name} closed: {exc}") from None

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self._chan.shutdown_write()

    def kill(self) -> None:
        if self._posix and self.wait(0) is None:
            with contextlib.suppress(TimeoutError):
                self._take_marker(5.0)
            if self.pid:
                with contextlib.suppress(Exception):  # the node may be gone: closing the channel is all that is left
                    self._transport.run(["kill", "-KILL", str(self.pid)], timeout=timeouts.REMOTE_KILL, wrap=False)
        elif not self._posix and self.wait(0) is None:
            self.close_stdin()  # the probe ends itself on EOF
            if self.wait(timeouts.PROCESS_EXIT) is None and self._transport.posix() and self.pid:
                # a probe that cannot read its EOF (frozen, stopped) on a POSIX node: its own pid (from its
                # ready line). Never on Windows: there the channel's close is all (the probe's idle timeout)
                with contextlib.suppress(Exception):
                    self._transport.run(["kill", "-KILL", str(self.pid)], timeout=timeouts.REMOTE_KILL, wrap=False)
        self._chan.close()

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            if self._chan.exit_status_ready():
                return self._chan.recv_exit_status()
            if self._chan.closed or not self._transport.alive():
                return -1
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def stderr_tail(self) -> str:
        return self._err.text()


class SSHTransport(Transport):
    """paramiko client per node, shared by every caller of this node in the process."""

    def __init__(self, node: Node, inventory: Inventory | None = None, jump_opener=None):
        super().__init__(node, inventory)
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.RLock()
        self._jump_opener = jump_opener  # name -> SSHTransport (the cache in transports/__init__)
        self._closed = False
        self.connects = 0  # how many connections this transport opened (rebuilds are visible)
        self._private_jump: SSHTransport | None = None
        self._sftp: paramiko.SFTPClient | None = None  # one per connection: a subsystem start costs an exec
        self._sftp_lock = threading.Lock()
        self._sftp_client: paramiko.SSHClient | None = None
        self._home: str | None = None

    # -- connection --------------------------------------------------------------------
    def settings(self) -> dict:
        """Effective connection settings: inventory first, then ~/.ssh/config, then defaults."""
        a: Access = self.node.access
        alias = a.host or self.node.name
        cfg: dict = {}
        if a.use_ssh_config:
            path = os.path.expanduser("~/.ssh/config")
            if os.path.exists(path):
                try:
                    cfg = paramiko.SSHConfig.from_path(path).lookup(alias)
                except Exception as exc:
                    raise self.fail(f"cannot read {path}: {exc}") from None
        keys = [a.key_file] if a.key_file else list(cfg.get("identityfile", []))
        known = a.known_hosts or (cfg.get("userknownhostsfile", "").split() or ["~/.ssh/known_hosts"])[0]
        return {
            "hostname": cfg.get("hostname", alias),
            "port": int(a.port or cfg.get("port", 22)),
            "user": a.user or cfg.get("user") or getpass.getuser(),
            "key_files": [os.path.expanduser(k) for k in keys],
            "known_hosts": os.path.expanduser(known),
            "jump": a.jump,
            "proxyjump": None if a.jump else cfg.get("proxyjump"),
            "timeout": float(a.connect_timeout),
        }

    def alive(self) -> bool:
        client = self._client
        t = client.get_transport() if client is not None else None
        return bool(t is not None and t.is_active())

    def client(self) -> paramiko.SSHClient:
        """The cached connection; rebuilt (once per call) when it died."""
        with self._lock:
            if self._closed:
                raise self.fail("transport closed")
            if self.alive():
                return self._client
            self._drop()
            self._client = self._connect()
            return self._client

    def _jump_channel(self, s: dict):
        if s["jump"]:
            if self._jump_opener is None or self.inventory is None or s["jump"] not in self.inventory.nodes:
                raise self.fail(f"jump host {s['jump']!r} is not an inventory node")
            jump = self._jump_opener(self.inventory.node(s["jump"]))
            label = s["jump"]
        elif s["proxyjump"] and s["proxyjump"].lower() != "none":
            user, host, port = _parse_jump(s["proxyjump"])
            a = self.node.access
            node = Node(name=f"{self.node.name}-proxyjump", role="host", os="linux", family="tcp",
                        access=Access(kind="ssh", host=host, port=port, user=user, known_hosts=a.known_hosts,
                                      host_key_policy=a.host_key_policy, connect_timeout=a.connect_timeout))
            if self._jump_opener:
                jump = self._jump_opener(node)
            else:  # private to this transport; closed with it
                if self._private_jump is None:
                    self._private_jump = SSHTransport(node, self.inventory)
                jump = self._private_jump
            label = s["proxyjump"]
        else:
            return None
        try:
            t = jump.client().get_transport()
            return t.open_channel("direct-tcpip", (s["hostname"], s["port"]), ("127.0.0.1", 0),
                                  timeout=s["timeout"])
        except _CONNECTION_ERRORS as exc:
            raise self.fail(f"via jump host {label}: cannot reach {s['hostname']}:{s['port']}: {exc}") from None

    def _connect(self) -> paramiko.SSHClient:
        s = self.settings()
        policy = self.node.access.host_key_policy
        client = paramiko.SSHClient()
        if os.path.exists(s["known_hosts"]):
            try:
                client.load_host_keys(s["known_hosts"])
            except (OSError, paramiko.SSHException) as exc:
                raise self.fail(f"cannot read known_hosts {s['known_hosts']}: {exc}") from None
        client.set_missing_host_key_policy(
            {"reject": paramiko.RejectPolicy(), "accept-new": paramiko.AutoAddPolicy(),
             "ignore": _IgnorePolicy()}[policy])
        password = None
        if self.node.access.password_env:
            password = os.environ.get(self.node.access.password_env)
            register_secret(password)
            if password is None:
                raise self.fail(f"environment variable {self.node.access.password_env} (password_env) is not set")
        sock = self._jump_channel(s)
        where = f"{s['user']}@{s['hostname']}:{s['port']}"
        try:
            client.connect(s["hostname"], port=s["port"], username=s["user"], password=password,
                           key_filename=s["key_files"] or None, timeout=s["timeout"], allow_agent=True,
                           look_for_keys=not s["key_files"], sock=sock, banner_timeout=s["timeout"],
                           auth_timeout=s["timeout"], channel_timeout=s["timeout"])
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise self.fail(f"host key of {s['hostname']} does not match {s['known_hosts']} "
                            f"(got {exc.key.get_name()}); refusing to connect") from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise self.fail(f"authentication failed for {where}: {exc}") from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise self.fail(f"host key of {s['hostname']} is not in {s['known_hosts']} "
                                f"(host_key_policy {policy}); add it or set host_key_policy: accept-new") from None
            raise self.fail(f"ssh to {where} failed: {exc}") from None
        except (TimeoutError, OSError, EOFError) as exc:
            client.close()
            raise self.fail(f"cannot connect to {where}: {exc or exc.__class__.__name__}") from None
        if policy == "accept-new":
            try:
                os.makedirs(os.path.dirname(s["known_hosts"]) or ".", exist_ok=True)
                client.save_host_keys(s["known_hosts"])
            except OSError as exc:
                raise self.fail(f"cannot save the new host key to {s['known_hosts']}: {exc}") from None
        client.get_transport().set_keepalive(15)
        self.connects += 1
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _open_session(self, timeout: float) -> paramiko.Channel:
        """A new session channel; when the cached connection turns out dead, rebuild it once."""
        last: Exception | None = None
        for _attempt in range(2):
            client = self.client()
            try:
                return client.get_transport().open_session(timeout=timeout)
            except _CONNECTION_ERRORS as exc:
                last = exc
                with self._lock:
                    if self._client is client:
                        self._drop()
        raise self.fail(f"cannot open a channel: {last or 'connection lost'}")

    def posix(self) -> bool:
        return self.node.os != "windows"

    def is_probe(self, argv: list[str]) -> bool:
        """True for `<python> <this run's probe> ...`: the one program every OS starts alike."""
        return self._probe_path is not None and len(argv) >= 2 and str(argv[1]) == self._probe_path

    def command_line(self, argv: list[str], wrap: bool = True) -> str:
        if self.is_probe(argv):
            try:
                return portable_command_line(self.netns_prefix() + list(argv))
            except ValueError as exc:
                raise self.fail(f"probe command line: {exc}") from None
        if not self.posix():
            return subprocess.list2cmdline([str(a) for a in argv])
        argv = self.netns_prefix() + list(argv)
        return _posix_command(argv) if wrap else shlex.join([str(a) for a in argv])

    def netns_prefix(self) -> list[str]:
        """A namespace node (`of:` in the inventory): every command runs under `ip netns exec <ns>`.

        iproute2's netns_switch() + execvp() keep the pid, so the wrapper's pid marker is still the
        command's own and a kill reaches it (ip/ipnetns.c, on_netns_exec()).
        """
        ns = self.node.access.netns
        return ["ip", "netns", "exec", ns] if ns else []

    # -- the file channel (SFTP) ---------------------------------------------------------
    def sftp(self) -> paramiko.SFTPClient:
        """This connection's SFTP session (opened once: on a nested guest a subsystem start costs seconds)."""
        with self._sftp_lock:
            client = self.client()
            if self._sftp is not None and self._sftp_client is client:
                return self._sftp
            for attempt in range(2):
                try:
                    self._sftp = client.open_sftp()
                    break
                except _CONNECTION_ERRORS as exc:
                    if attempt:
                        raise self.fail(f"cannot open sftp: {exc}") from None
                    with self._lock:
                        if self._client is client:
                            self._drop()
                    client = self.client()
            self._sftp_client = client
            assert self._sftp is not None  # opened above, or the loop raised
            self._sftp.get_channel().settimeout(DEFAULT_DEADLINE)
            return self._sftp

    def _sftp_call(self, what: str, fn):
        try:
            return fn(self.sftp())
        except (FileExistsError, FileNotFoundError, PermissionError):
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise OSError(f"sftp {what}: {exc or exc.__class__.__name__}") from None

    def default_workdir(self) -> str:
        """POSIX: /tmp. Windows: the login's own profile folder, where SFTP starts (Win32-OpenSSH
        sftp-server realpath("."): `/C:/Users/<name>`), private to that user by its default ACL."""
        if self.posix():
            return super().default_workdir()
        if self._home is None:
            self._home = self._sftp_call("realpath .", lambda s: s.normalize("."))
        return self._home

    def file_path(self, path: str) -> str:
        """`C:\\hv` -> `/C:/hv`: the form Win32-OpenSSH's sftp-server takes (misc.c realpath skips the
        leading slash of `/x:`); POSIX paths as they are."""
        if self.posix():
            return path
        p = path.replace("\\", "/")
        return "/" + p if len(p) >= 2 and p[1] == ":" else p

    def node_path(self, path: str) -> str:
        """`/C:/Users/x/f` -> `C:\\Users\\x\\f` for the command line on a Windows node."""
        if self.posix():
            return path
        p = path[1:] if len(path) >= 3 and path[0] == "/" and path[2] == ":" else path
        return p.replace("/", "\\")

    def make_private_dir(self, path: str) -> None:
        def mkdir(s: paramiko.SFTPClient) -> None:
            try:
                s.stat(path)
            except FileNotFoundError:
                pass
            else:
                raise FileExistsError(path)
            s.mkdir(path, 0o700)  # exclusive: fails if it exists (sftp-server process_mkdir: mkdir(2))
        self._sftp_call("mkdir", mkdir)

    def write_file(self, path: str, data: bytes) -> None:
        def write(s: paramiko.SFTPClient) -> None:
            with s.open(path, "wb") as f:
                f.write(data)
        self._sftp_call("put", write)

    def read_file(self, path: str) -> bytes:
        def read(s: paramiko.SFTPClient) -> bytes:
            with s.open(path, "rb") as f:
                return f.read()
        return self._sftp_call("read", read)

    def remove_file(self, path: str) -> None:
        self._sftp_call("remove", lambda s: s.remove(path))

    def remove_dir(self, path: str) -> None:
        self._sftp_call("rmdir", lambda s: s.rmdir(path))

    # -- the contract ------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None, wrap: bool = True) -> CommandResult:
        start = time.monotonic()
        deadline = start + timeout
        chan = self._open_session(timeout)
        wrap = wrap and self.posix() and not self.is_probe(argv)
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            chan.settimeout(timeout)
            chan.exec_command(self.command_line(argv, wrap))
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                got = False
                while chan.recv_ready():
                    out.append(chan.recv(65536))
                    got = True
                while chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(65536))
                    got = True
                if chan.exit_status_ready() and (chan.eof_received or chan.closed) \
                        and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed and not chan.exit_status_ready():
                    raise self.fail(f"connection lost while running {argv[0]}")
                if time.monotonic() >= deadline:
                    text = b"".join(out).decode("utf-8", "replace")
                    pid = self._marker_pid(text) if wrap else None
                    if pid:
                        with contextlib.suppress(Exception):
                            self.run(["kill", "-KILL", str(pid)], timeout=timeouts.REMOTE_KILL, wrap=False)
                    raise CommandTimeout(self.node.name,
                                         f"{argv[0]} still running after {timeout:g}s; "
                                                  f"{f'killed pid {pid}' if pid else 'abandoned'}",
                                         self._strip_marker(text) if wrap else text,
                                         b"".join(err).decode("utf-8", "replace"))
                if not got:
                    time.sleep(0.005)
            rc = chan.recv_exit_status()
        except _CONNECTION_ERRORS as exc:
            raise self.fail(f"running {argv[0]}: {exc or exc.__class__.__name__}") from None
        finally:
            chan.close()
        text = b"".join(out).decode("utf-8", "replace")
        return CommandResult(rc, self._strip_marker(text) if wrap else text,
                             b"".join(err).decode("utf-8", "replace"), round((time.monotonic() - start) * 1000, 3))

    @staticmethod
    def _marker_pid(text: str) -> int | None:
        first = text.split("\n", 1)[0]
        if first.startswith(PID_MARKER):
            try:
                return int(first.split()[1])
            except (IndexError, ValueError):
                return None
        return None

    @staticmethod
    def _strip_marker(text: str) -> str:
        return text.split("\n", 1)[1] if text.startswith(PID_MARKER) and "\n" in text else (
            "" if text.startswith(PID_MARKER) else text)

    def spawn(self, argv: list[str]) -> Process:
        timeout = float(self.node.access.connect_timeout)
        chan = self._open_session(timeout)
        try:
            chan.exec_command(self.command_line(argv))
        except _CONNECTION_ERRORS as exc:
            chan.close()
            raise self.fail(f"cannot start {argv[0]}: {exc}") from None
        chan.settimeout(None)
        return SSHProcess(self, chan, self.posix() and not self.is_probe(argv))

    def put(self, local_path: str, remote_path: str) -> None:
        for attempt in range(2):
            client = self.client()
            try:
                sftp = client.open_sftp()
                break
            except _CONNECTION_ERRORS as exc:
                if attempt:
                    raise self.fail(f"cannot open sftp: {exc}") from None
                with self._lock:
                    if self._client is client:
                        self._drop()
        try:
            sftp.get_channel().settimeout(DEFAULT_DEADLINE)
            parts = [p for p in remote_path.split("/")[:-1] if p]
            path = "/" if remote_path.startswith("/") else ""
            for p in parts:
                path = f"{path}{p}" if path in ("", "/") else f"{path}/{p}"
                try:
                    sftp.stat(path)
                except FileNotFoundError:
                    sftp.mkdir(path)
            tmp = f"{remote_path}.{os.getpid()}.{threading.get_ident()}.tmp"
            sftp.put(local_path, tmp)
            sftp.posix_rename(tmp, remote_path)  # concurrent workers never run half a file
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self.fail(f"cannot copy {os.path.basename(local_path)} to {remote_path}: {exc}") from None
        finally:
            sftp.close()

    def close(self) -> None:
        if self.alive() and not self._closed:  # tidy up over the live connection; never reconnect for it
            self.remove_run_dir()
        with self._sftp_lock:
            sftp, self._sftp = self._sftp, None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        with self._lock:
            self._closed = True
            self._drop()
            if self._private_jump is not None:
                self._private_jump.close()
                self._private_jump = None
