"""A real Samba (smbd) in a network namespace of its own, standing in for a Windows node's SMB side.

Why: the psexec transport's file half (smbclient: register_session, makedirs, open_file, remove)
and pypsexec's connect/authenticate/ADMIN$ upload can run for real here; only PAExec's service
(svcctl over DCE/RPC) is Windows' alone, and what Samba answers to it is recorded by the tests.

Layout, per fixture (suffix S, subnet 10.251.N.0/24 not in use here):

    root ns  hvs<S>r 10.251.N.254 ── veth ── eth0 10.251.N.1  (namespace hvs-<S>: smbd on SMB_PORT)

Shares: `C$` (a fake C: drive) and `ADMIN$` (its Windows directory), user root with a random
password that never touches a file in plain text (pdbedit reads it on stdin, stores its hash).
down() kills every process in the namespace by PID (smbd and the samba-dcerpcd it starts on
demand), deletes the namespace, the link and the directory.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SMB_PORT = 4455  # not 445: the transport must carry the node's port on every call
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
START_TIMEOUT = 60.0  # smbd on a busy 2-core machine


def skip_reason() -> str | None:
    """Why Samba cannot be run here, or None."""
    if os.geteuid() != 0:
        return "Samba test server needs root (ip netns, smbd)"
    for tool in ("ip", "smbd", "pdbedit"):
        if shutil.which(tool, path=ENV["PATH"]) is None:
            return f"Samba test server needs {tool} (apt-get install samba iproute2; scripts/setup.sh does)"
    return None


def _sh(argv: list[str], input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, input=input, capture_output=True, env=ENV, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: rc={proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
    return proc


def _free_subnet() -> str:
    used = _sh(["ip", "-4", "-o", "addr"]).stdout.decode()
    for n in [secrets.randbelow(200) + 20 for _ in range(30)]:
        if f"10.251.{n}." not in used:
            return f"10.251.{n}"
    raise RuntimeError("no free 10.251.N.0/24 subnet")


@dataclass
class SambaServer:
    suffix: str
    subnet: str
    dir: Path
    user: str = "root"
    password: str = field(default_factory=lambda: "Pw-" + secrets.token_urlsafe(12), repr=False)
    smbd_pid: int | None = None
    _log: object = None

    @property
    def ns(self) -> str:
        return f"hvs-{self.suffix}"

    @property
    def root_link(self) -> str:
        return f"hvs{self.suffix}r"

    @property
    def address(self) -> str:
        return f"{self.subnet}.1"

    @property
    def c_drive(self) -> Path:
        return self.dir / "c"

    @property
    def conf(self) -> Path:
        return self.dir / "smb.conf"

    @property
    def log_path(self) -> Path:
        return self.dir / "smbd.out"

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def start(cls) -> SambaServer:
        suffix = secrets.token_hex(2)
        server = cls(suffix, _free_subnet(), Path(f"/tmp/hvsock-samba-{suffix}"))
        try:
            server._up()
        except BaseException:
            server.down()
            raise
        return server

    def _config(self) -> str:
        d = self.dir
        return "\n".join([
            "[global]",
            "server role = standalone server",
            "workgroup = HVTEST",
            "netbios name = HVSAMBA",
            f"smb ports = {SMB_PORT}",
            f"interfaces = {self.address}/24",
            "bind interfaces only = yes",
            f"private dir = {d}/private",
            f"lock directory = {d}/lock",
            f"state directory = {d}/state",
            f"cache directory = {d}/cache",
            f"pid directory = {d}/run",
            f"ncalrpc dir = {d}/ncalrpc",
            f"passdb backend = tdbsam:{d}/private/passdb.tdb",
            f"log file = {d}/log.%m",
            "log level = 1",
            "server min protocol = SMB2_10",
            "server smb encrypt = desired",
            "map to guest = never",
            "restrict anonymous = 2",
            "load printers = no",
            "printcap name = /dev/null",
            "disable spoolss = yes",
            "disable netbios = yes",
            "",
            "[C$]",
            f"path = {self.c_drive}",
            "read only = no",
            f"valid users = {self.user}",
            "",
            "[ADMIN$]",
            f"path = {self.c_drive / 'Windows'}",
            "read only = no",
            f"valid users = {self.user}",
            "",
        ])

    def _up(self) -> None:
        self.dir.mkdir(mode=0o700)
        for sub in ("private", "lock", "state", "cache", "run", "ncalrpc", "c/Windows/Temp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config())
        _sh(["pdbedit", "-s", str(self.conf), "-a", "-u", self.user, "-t"],
            input=f"{self.password}\n{self.password}\n".encode())
        _sh(["ip", "netns", "add", self.ns])
        _sh(["ip", "link", "add", self.root_link, "type", "veth", "peer", "name", f"hvs{self.suffix}n"])
        _sh(["ip", "link", "set", f"hvs{self.suffix}n", "netns", self.ns])
        _sh(["ip", "-n", self.ns, "link", "set", f"hvs{self.suffix}n", "name", "eth0"])
        _sh(["ip", "-n", self.ns, "addr", "add", f"{self.address}/24", "dev", "eth0"])
        _sh(["ip", "-n", self.ns, "link", "set", "eth0", "up"])
        _sh(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        _sh(["ip", "addr", "add", f"{self.subnet}.254/24", "dev", self.root_link])
        _sh(["ip", "link", "set", self.root_link, "up"])
        self._log = open(self.log_path, "wb")  # noqa: SIM115  closed in stop(), after smbd
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "smbd", "--foreground", "--no-process-group",
                                 "--debug-stdout", "-s", str(self.conf)],
                                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=ENV,
                                start_new_session=True)  # smbd's shutdown signals its process group: not ours
        self.smbd_pid = proc.pid  # `ip netns exec` execs smbd: same pid
        self._proc = proc
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"smbd exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.address, SMB_PORT), timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"smbd not listening on {self.address}:{SMB_PORT} after {START_TIMEOUT:g}s") from None
                time.sleep(0.2)

    # -- looking ------------------------------------------------------------------------------
    def smbd_running(self) -> bool:
        """True when our smbd process is alive and really is smbd."""
        if self.smbd_pid is None or self._proc.poll() is not None:
            return False
        try:
            return Path(f"/proc/{self.smbd_pid}/comm").read_text().strip().startswith("smbd")
        except OSError:
            return False

    def pids(self) -> list[int]:
        if not Path(f"/run/netns/{self.ns}").exists():
            return []
        out = _sh(["ip", "netns", "pids", self.ns], check=False).stdout.decode()
        return [int(p) for p in out.split()]

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def local(self, windows_path: str) -> Path:
        r"""Where `C:\x\y` lives on this machine."""
        drive, _, rest = windows_path.replace("/", "\\").partition(":\\")
        assert drive.upper() == "C", windows_path
        return self.c_drive.joinpath(*[p for p in rest.split("\\") if p])

    # -- tearing down ---------------------------------------------------------------------------
    def down(self) -> None:
        for pid in self.pids():
            _kill(pid)
        if getattr(self, "_proc", None) is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(10)
        if Path(f"/run/netns/{self.ns}").exists():
            _sh(["ip", "netns", "del", self.ns], check=False)
        _sh(["ip", "link", "del", self.root_link], check=False)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _kill(pid: int) -> None:
    """SIGTERM, then SIGKILL after a grace: by PID, processes of our own namespace only."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
