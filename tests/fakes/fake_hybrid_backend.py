"""A fake hybrid vsock backend: the host-facing half of rust-vmm's vhost-device-vsock 0.3.0, in threads.

What it mirrors (vhost-device-vsock 0.3.0, crates.io source), and only that:
- a UnixListener on the guest's uds path (vhu_vsock_thread.rs VhostUserVsockThread::new binds it);
- a host connection sends "CONNECT <port>\\n" (read_local_stream_port: the first word, any case,
  must be "connect", the second a u32; anything else drops the stream unanswered);
- the guest accepts: the backend writes "OK <peer port>\\n" (vsock_conn.rs send_pkt, VSOCK_OP_RESPONSE:
  `format!("OK {}\\n", self.peer_port)`; peer_port is the guest port asked for, as the 0.3.0
  source has it) and relays bytes both ways;
- the guest refuses (RST): the connection is removed and the stream dropped (thread_backend.rs send_pkt,
  VSOCK_OP_RST), so the host reads EOF;
- a guest connect to host port P: UnixStream::connect("<uds>_P") (thread_backend.rs
  handle_new_guest_conn); when that fails nothing is sent back (enq_rst is a TODO), which the
  fake reports as "timeout" to the test that plays the guest.
The "guest" here is a dict of port -> handler the test installs: it stands for the guest's own
AF_VSOCK listener, which the fake cannot be. It proves the probe's plumbing, never an outcome.
"""
from __future__ import annotations

import socket
import threading


class FakeBackend:
    def __init__(self, uds: str, ready: bool = True):
        self.uds = uds
        self.ready = ready  # False: no VMM has set the guest's memory up (vhu_vsock_thread.rs handle_event)
        self.guest_ports: dict[int, str] = {}  # port -> prefix the "guest" answers with ("Hello: ")
        self.requests: list[bytes] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(uds)
        self._sock.listen(8)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._host_conn, args=(conn,), daemon=True).start()

    def _host_conn(self, conn: socket.socket) -> None:
        if not self.ready:  # "If we aren't ready to process requests, accept and immediately close"
            conn.close()
            return
        with conn:
            line = b""
            while not line.endswith(b"\n"):
                chunk = conn.recv(1)
                if not chunk:
                    return
                line += chunk
            self.requests.append(line)
            words = line.decode("utf-8", "replace").split()
            if len(words) < 2 or words[0].lower() != "connect" or not words[1].isdigit() or int(words[1]) > 0xFFFFFFFF:
                return  # read_local_stream_port failed: the stream is dropped unanswered
            port = int(words[1])
            if port not in self.guest_ports:
                return  # the guest's RST: the connection and its stream are dropped
            conn.sendall(f"OK {port}\n".encode())
            data = conn.recv(1024)
            if data:
                conn.sendall(self.guest_ports[port].encode() + data)

    def guest_connects(self, port: int, payload: bytes, timeout: float = 5.0) -> bytes | str:
        """The guest connects to CID 2 port P: the backend connects to <uds>_P and relays."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(f"{self.uds}_{port}")
        except OSError:
            s.close()
            return "timeout"  # no RST in 0.3.0: the guest's connect times out
        with s:
            s.settimeout(timeout)
            s.sendall(payload)
            return s.recv(1024)

    def close(self) -> None:
        self._stop = True
        self._sock.close()
