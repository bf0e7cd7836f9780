"""C3's client template ends when the SSH banner is in, not at socat's idle timeout.

sshd sends its banner and then waits for the client's: a client pipeline `socat | grep -q` whose
socat keeps reading would sit out its whole `-T {timeout}`. Run here over TCP against a local
banner server that behaves like sshd (banner, then silence); only the connect address differs
from the shipped template (AF_VSOCK is never opened on this machine).
"""
from __future__ import annotations

import socket
import threading
from pathlib import Path

from harness.agents import AgentPool
from harness.cell import Driver
from harness.outcome import Outcome
from harness.runner import run_cell
from harness.scenario import load_cells
from tests.test_drivers import cell, local_inventory

ROOT = Path(__file__).resolve().parent.parent
IDLE_TIMEOUT = 60  # the template's -T: a client that waits for it takes a minute


def c3_client_template() -> str:
    c3 = next(c for c in load_cells(str(ROOT / "scenarios" / "c-kvm-vsock.yaml"), None) if c.label == "C3")
    template = c3.driver.client
    assert "VSOCK-CONNECT:{target}:{port}" in template
    return template.replace("VSOCK-CONNECT:{target}:{port}", "TCP4:{target}:{port}")


class SilentSshd:
    """Accepts one connection, sends an SSH banner, then waits (as sshd does) until the peer closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.peer_closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(IDLE_TIMEOUT * 2)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
            conn.settimeout(IDLE_TIMEOUT * 2)
            try:
                while conn.recv(1024):
                    pass
                self.peer_closed.set()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_c3_client_reads_the_banner_and_ends_before_its_idle_timeout():
    server = SilentSshd()
    pool = AgentPool(local_inventory())
    try:
        driver = Driver(kind="command", client=c3_client_template())
        obs = run_cell(cell("loopback", "loopback", server.port, timeout=IDLE_TIMEOUT, driver=driver),
                       pool.inventory, pool)
        assert obs.outcome is Outcome.O, obs.detail
        # the client hung up while the server was still silent: it ended on the banner, not on -T
        assert server.peer_closed.wait(5)
        assert obs.elapsed_ms < IDLE_TIMEOUT * 1000 / 2
    finally:
        pool.close()
        server.close()


def test_c3_client_without_a_banner_is_not_O():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]

        def wrong_banner():
            conn, _ = sock.accept()
            with conn:
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")

        t = threading.Thread(target=wrong_banner, daemon=True)
        t.start()
        pool = AgentPool(local_inventory())
        try:
            driver = Driver(kind="command", client=c3_client_template())
            obs = run_cell(cell("loopback", "loopback", port, timeout=IDLE_TIMEOUT, driver=driver), pool.inventory, pool)
        finally:
            pool.close()
        t.join(5)
    assert obs.outcome is Outcome.E, obs.detail
