"""A real three-host lab in network namespaces, each host with its own sshd.

Why: cross-host outcomes (a loopback-bound server refusing a peer, errno and times) and the
SSH transport (jump hosts, host keys, dead connections) need real machines; namespaces give
three of them in seconds. Layout, per run (suffix S, subnet 10.250.N.0/24 not in use here):

    root ns  hvmSr 10.250.N.254 ──┐
    hvm-S-a  eth0  10.250.N.1   ──┤ bridge br0 in namespace hvm-S-br
    hvm-S-b  eth0  10.250.N.2   ──┤
    hvm-S-c  eth0  10.250.N.3   ──┘   (the inventory reaches c through a as jump host)

Traffic only goes to namespaces this module created. Everything is torn down by down():
sshd and every process in the namespaces killed by PID, namespaces and links deleted.

By hand:  python3 -m tests.netns_lab up   (writes /tmp/hvsock-netns/inventory.yaml)
          python3 -m tests.netns_lab down
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

NODES = ("a", "b", "c")
JUMPED = {"c": "a"}  # node -> its jump host
NODE_NAME = "ns{}"  # inventory names: nsa, nsb, nsc
DEFAULT_DIR = "/tmp/hvsock-netns"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}  # no ~/.bashrc, no pyenv


def skip_reason() -> str | None:
    """Why the lab cannot be built here, or None."""
    if os.geteuid() != 0:
        return "netns lab needs root (ip netns, sshd)"
    for tool in ("ip", "ss", "ssh-keygen"):
        if shutil.which(tool, path=ENV["PATH"]) is None:
            return f"netns lab needs {tool}"
    if not os.path.exists("/usr/sbin/sshd"):
        return "netns lab needs /usr/sbin/sshd (openssh-server)"
    return None


def sh(argv: list[str], check: bool = True, timeout: float = 30, input: bytes | None = None):
    proc = subprocess.run(argv, capture_output=True, env=ENV, timeout=timeout,
                          input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: rc={proc.returncode}: {proc.stderr.decode().strip()}")
    return proc


def _free_subnet() -> str:
    used = sh(["ip", "-4", "-o", "addr"]).stdout.decode()
    for n in [secrets.randbelow(200) + 20 for _ in range(30)]:
        if f"10.250.{n}." not in used:
            return f"10.250.{n}"
    raise RuntimeError("no free 10.250.N.0/24 subnet")


@dataclass
class NetnsLab:
    suffix: str
    subnet: str  # "10.250.N"
    dir: str
    sshd_pids: dict[str, int] = field(default_factory=dict)
    up_done: bool = False

    # -- names -----------------------------------------------------------------------
    def ns(self, n: str) -> str:
        return f"hvm-{self.suffix}-{n}"

    def addr(self, n: str) -> str:
        return f"{self.subnet}.{NODES.index(n) + 1}"

    @property
    def root_link(self) -> str:
        return f"hvm{self.suffix}r"

    @property
    def inventory_path(self) -> str:
        return str(Path(self.dir) / "inventory.yaml")

    @property
    def client_key(self) -> str:
        return str(Path(self.dir) / "client_key")

    @property
    def known_hosts(self) -> str:
        return str(Path(self.dir) / "known_hosts")

    def node_name(self, n: str) -> str:
        return NODE_NAME.format(n)

    # -- building --------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | None = None) -> NetnsLab:
        suffix = secrets.token_hex(2)
        directory = directory or f"/tmp/hvsock-netns-{suffix}"
        lab = cls(suffix=suffix, subnet=_free_subnet(), dir=directory)
        try:
            lab.up()
        except BaseException:
            lab.down()
            raise
        return lab

    def up(self) -> None:
        d = Path(self.dir)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        self.save_state()  # from here on, down() can find whatever gets built
        br = self.ns("br")
        sh(["ip", "netns", "add", br])
        sh(["ip", "-n", br, "link", "add", "br0", "type", "bridge"])
        sh(["ip", "-n", br, "link", "set", "br0", "up"])
        sh(["ip", "-n", br, "link", "set", "lo", "up"])
        for n in NODES:
            ns = self.ns(n)
            sh(["ip", "netns", "add", ns])
            inner, outer = f"hvm{self.suffix}{n}", f"hvb{self.suffix}{n}"
            sh(["ip", "link", "add", inner, "type", "veth", "peer", "name", outer])
            sh(["ip", "link", "set", inner, "netns", ns])
            sh(["ip", "link", "set", outer, "netns", br])
            sh(["ip", "-n", ns, "link", "set", inner, "name", "eth0"])
            sh(["ip", "-n", ns, "addr", "add", f"{self.addr(n)}/24", "dev", "eth0"])
            sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            sh(["ip", "-n", br, "link", "set", outer, "master", "br0"])
            sh(["ip", "-n", br, "link", "set", outer, "up"])
        peer = f"hvb{self.suffix}r"
        sh(["ip", "link", "add", self.root_link, "type", "veth", "peer", "name", peer])
        sh(["ip", "link", "set", peer, "netns", br])
        sh(["ip", "-n", br, "link", "set", peer, "master", "br0"])
        sh(["ip", "-n", br, "link", "set", peer, "up"])
        sh(["ip", "addr", "add", f"{self.subnet}.254/24", "dev", self.root_link])
        sh(["ip", "link", "set", self.root_link, "up"])

        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hvsock-netns-client", "-f", self.client_key])
        shutil.copyfile(self.client_key + ".pub", d / "authorized_keys")
        known = []
        for n in NODES:
            key = d / f"host_{n}"
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"hvsock-netns-{n}", "-f", str(key)])
            pub = (d / f"host_{n}.pub").read_text().split()
            known.append(f"{self.addr(n)} {pub[0]} {pub[1]}\n")
            (d / f"sshd_{n}.conf").write_text(self.sshd_config(n))
        Path(self.known_hosts).write_text("".join(known))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        for n in NODES:
            self.start_sshd(n)
        self.write_inventory()
        self.up_done = True
        self.save_state()

    def sshd_config(self, n: str) -> str:
        d = Path(self.dir)
        return "\n".join([
            f"ListenAddress {self.addr(n)}",
            "Port 22",
            f"HostKey {d / f'host_{n}'}",
            f"PidFile {d / f'sshd_{n}.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AllowTcpForwarding yes",
            "PrintMotd no",
            "UseDNS no",
            "MaxStartups 50",
            "MaxSessions 50",
            "SetEnv SHLVL=1",  # bash then skips ~/.bashrc (pyenv, cargo): commands start fast
            "Subsystem sftp internal-sftp",
            "LogLevel INFO",
            "",
        ])

    def start_sshd(self, n: str, wait: float = 20.0) -> None:
        d = Path(self.dir)
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(n), "/usr/sbin/sshd", "-D", "-f",
                                 str(d / f"sshd_{n}.conf"), "-E", str(d / f"sshd_{n}.log")],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=ENV, start_new_session=True)
        self.sshd_pids[n] = proc.pid
        self.save_state()
        deadline = time.monotonic() + wait
        while True:  # sshd has no readiness signal: the port answering is the signal
            if proc.poll() is not None:
                log = (d / f"sshd_{n}.log").read_text(errors="replace") if (d / f"sshd_{n}.log").exists() else ""
                raise RuntimeError(f"sshd in {self.ns(n)} exited rc={proc.returncode}: {log.strip()[-300:]}")
            try:
                with socket.create_connection((self.addr(n), 22), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd in {self.ns(n)} not listening after {wait}s") from None
                time.sleep(0.05)

    def stop_sshd(self, n: str) -> None:
        """Stop node n's sshd and every connection it serves (as if the machine went away)."""
        for pid in self.pids(n):
            _kill(pid)
        pid = self.sshd_pids.pop(n, None)
        if pid:
            _kill(pid)
        self.save_state()

    def kill_connections(self, n: str) -> list[int]:
        """Kill the per-connection sshd children of node n (the listener stays): connections die."""
        main = self.sshd_pids.get(n)
        out = sh(["ps", "-o", "pid=", "--ppid", str(main)], check=False).stdout.decode().split()
        killed = [int(p) for p in out]
        for pid in killed:
            _kill(pid)
        return killed

    def write_inventory(self) -> None:
        lines = ["# generated by tests/netns_lab.py; torn down with `python3 -m tests.netns_lab down`",
                 f"inventory: netns-{self.suffix}",
                 "description: three hosts in network namespaces, each with its own sshd (tcp family)",
                 "nodes:"]
        for n in NODES:
            lines += [f"  - name: {self.node_name(n)}",
                      "    role: host",
                      "    os: linux",
                      "    family: tcp",
                      f"    address: {self.addr(n)}",
                      "    access:",
                      "      kind: ssh",
                      f"      host: {self.addr(n)}",
                      "      user: root",
                      f"      key_file: {self.client_key}",
                      f"      known_hosts: {self.known_hosts}",
                      "      host_key_policy: reject",
                      "      use_ssh_config: false",
                      "      connect_timeout: 15",
                      "      python: /usr/bin/python3",
                      f"      workdir: /tmp/hvsock-netns-{self.suffix}/work-{n}"]
            if n in JUMPED:
                lines.append(f"      jump: {self.node_name(JUMPED[n])}")
        tmp = self.inventory_path + ".tmp"
        Path(tmp).write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.inventory_path)

    def inventory(self):
        from harness.inventory import load_inventory
        return load_inventory(self.inventory_path)

    # -- looking inside ----------------------------------------------------------------
    def ns_exec(self, n: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        return sh(["ip", "netns", "exec", self.ns(n), *argv], check=False, timeout=timeout)

    def pids(self, n: str) -> list[int]:
        out = sh(["ip", "netns", "pids", self.ns(n)], check=False).stdout.decode().split()
        return [int(p) for p in out]

    def processes(self, n: str) -> list[str]:
        """'pid args' of every process inside node n's namespace."""
        rows = []
        for pid in self.pids(n):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            rows.append(f"{pid} {args}")
        return rows

    def leftovers(self, n: str) -> list[str]:
        """Anything a run left behind on node n: probe processes and listeners other than sshd."""
        left = [p for p in self.processes(n) if "probe.py" in p or "socat" in p]
        ss = self.ns_exec(n, ["ss", "-Hltnp"]).stdout.decode().splitlines()
        left += [f"listener: {line}" for line in ss if line.strip() and '"sshd"' not in line]
        return left

    def assert_clean(self, grace: float = 5.0) -> None:
        """No probe, socat or listener left on any node (what every run must guarantee).

        `grace`: processes told to exit (bye, closed channel) get this long to go.
        """
        deadline = time.monotonic() + grace
        while True:
            left = {self.node_name(n): self.leftovers(n) for n in NODES if _ns_exists(self.ns(n))}
            left = {k: v for k, v in left.items() if v}
            if not left:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"left behind on the nodes: {left}")
            time.sleep(0.1)

    # -- teardown ----------------------------------------------------------------------
    def down(self) -> None:
        for n in NODES:
            for pid in self.pids(n) if _ns_exists(self.ns(n)) else []:
                _kill(pid)
        for pid in list(self.sshd_pids.values()):
            _kill(pid)
        self.sshd_pids.clear()
        for n in (*NODES, "br"):
            if _ns_exists(self.ns(n)):
                sh(["ip", "netns", "del", self.ns(n)], check=False)
        if sh(["ip", "link", "show", self.root_link], check=False).returncode == 0:
            sh(["ip", "link", "del", self.root_link], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(f"/tmp/hvsock-netns-{self.suffix}", ignore_errors=True)

    def save_state(self) -> None:
        path = Path(self.dir) / "state.json"
        if not Path(self.dir).exists():
            return
        tmp = str(path) + ".tmp"
        Path(tmp).write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: str) -> NetnsLab:
        data = json.loads((Path(directory) / "state.json").read_text())
        return cls(**data)


def _ns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def _kill(pid: int) -> None:
    """SIGTERM, then SIGKILL if it lingers; only pids this lab started or that live in its namespaces."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
                return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


# -- pytest fixture ---------------------------------------------------------------------
try:
    import pytest
except ImportError:  # the CLI below works without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def netns_lab():
        """A fresh lab per test module; torn down even when the tests fail."""
        reason = skip_reason()
        if reason:
            pytest.skip(reason)
        lab = NetnsLab.create()
        try:
            yield lab
        finally:
            lab.down()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m tests.netns_lab", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--dir", default=DEFAULT_DIR, help=f"state and inventory directory (default {DEFAULT_DIR})")
    args = p.parse_args(argv)
    state = Path(args.dir) / "state.json"
    if args.action == "up":
        reason = skip_reason()
        if reason:
            print(f"netns_lab: {reason}", file=sys.stderr)
            return 2
        if state.exists():
            print(f"netns_lab: a lab is already up ({state}); run `down` first", file=sys.stderr)
            return 2
        lab = NetnsLab.create(args.dir)
        print(f"netns lab up: {lab.inventory_path}")
        print(f"  pytest scenarios/tcp-netns.yaml --inventory {lab.inventory_path}")
        return 0
    if not state.exists():
        print(f"netns_lab: no lab in {args.dir}", file=sys.stderr)
        return 0 if args.action == "down" else 1
    lab = NetnsLab.load(args.dir)
    if args.action == "status":
        for n in NODES:
            print(f"{lab.node_name(n)} {lab.ns(n)} {lab.addr(n)} sshd pid {lab.sshd_pids.get(n)}")
        return 0
    lab.down()
    print("netns lab down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
