"""Is a lab node's sshd answering? Read its SSH banner: cheap, and true only once sshd listens.

A full SSH login to a nested guest costs ~55 s of key exchange under TCG (lab-recipe.md), so the
boot waits for the banner (through l1 for the guests) and leaves logins to the transport.
"""
from __future__ import annotations

import socket
import time

from harness.lab.paths import LabPaths


def _banner_from(sock_like, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline and b"\n" not in data:
        try:
            chunk = sock_like.recv(256)
        except (TimeoutError, OSError):
            return False
        if not chunk:
            return False
        data += chunk
    return data.startswith(b"SSH-2.0-")


def tcp_banner(host: str, port: int, timeout: float = 5.0) -> bool:
    """qemu's hostfwd accepts even before the guest listens, then closes: only a banner counts."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return _banner_from(s, timeout)
    except OSError:
        return False


class L1Client:
    """One paramiko connection to l1, kept while the guests boot, to read their banners via l1."""

    def __init__(self, paths: LabPaths, port: int):
        import paramiko

        self.client = paramiko.SSHClient()
        self.client.load_host_keys(str(paths.known_hosts))
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.client.connect("127.0.0.1", port=port, username="root", key_filename=str(paths.client_key),
                            timeout=30, banner_timeout=60, auth_timeout=60, allow_agent=False,
                            look_for_keys=False)

    def run(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        _, out, _err = self.client.exec_command(command, timeout=timeout)
        text = out.read().decode(errors="replace")
        return out.channel.recv_exit_status(), text

    def guest_banner(self, port: int, timeout: float = 20.0) -> bool:
        try:
            chan = self.client.get_transport().open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                                            timeout=timeout)
        except Exception:  # paramiko.ChannelException: nothing listens yet
            return False
        try:
            chan.settimeout(timeout)
            return _banner_from(chan, timeout)
        finally:
            chan.close()

    def close(self) -> None:
        self.client.close()
