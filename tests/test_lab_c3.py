"""Matrix C, C3 for real: ssh over vsock, exactly the documents' relay, in the lab.

vm21 (guest-cid 21): `socat VSOCK-LISTEN:22,reuseaddr,fork TCP:localhost:22`
l1 (the host):       `socat TCP4-LISTEN:22222,reuseaddr,fork VSOCK-CONNECT:21:22`, then
                     `ssh -p 22222 root@localhost` inside l1 must log into vm21.
A full SSH login to a nested guest costs ~1 min of key exchange under TCG: one login only.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.qemu


def test_c3_ssh_over_vsock_reaches_the_guest(lab):
    from harness.lab.paths import LabPaths

    inventory, pool = lab
    paths = LabPaths.default()
    host, guest = pool.transport("l1"), pool.transport("vm21")
    cid = inventory.node("vm21").cid
    # pin vm21's host key for the name ssh will see through the relay
    pub = Path(str(paths.host_key("vm21")) + ".pub").read_text().split()
    with tempfile.NamedTemporaryFile("w", suffix=".known_hosts", delete=False) as fh:
        fh.write(f"[localhost]:22222 {pub[0]} {pub[1]}\n")
    host.put(fh.name, "/tmp/hvsock-matrix-c3.known_hosts")
    Path(fh.name).unlink()

    relay_guest = guest.spawn(["socat", "VSOCK-LISTEN:22,reuseaddr,fork", "TCP:localhost:22"])
    relay_host = host.spawn(["socat", "TCP4-LISTEN:22222,reuseaddr,fork", f"VSOCK-CONNECT:{cid}:22"])
    try:
        ssh = ["ssh", "-p", "22222", "-i", str(paths.client_key), "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/tmp/hvsock-matrix-c3.known_hosts",
               "-o", "ConnectTimeout=300", "root@localhost", "hostname; cat /run/hvsock-matrix-lab-guest"]
        deadline = time.monotonic() + 420
        attempts = []
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            res = host.run(ssh, timeout=400)
            attempts.append(f"rc {res.rc} in {time.monotonic() - t0:.0f}s: {res.stderr.strip()[-200:]}")
            if res.rc == 0:
                break
            time.sleep(5)  # the guest's relay may still be starting (a process start costs 10-50 s)
        assert res.rc == 0, "; ".join(attempts)
        assert res.stdout.split() == ["vm21", "vm21"]
        print(f"\nC3: ssh over vsock logged into vm21 ({len(attempts)} attempt(s): {attempts[-1]})")
    finally:
        relay_host.kill()
        relay_guest.kill()
        host.run(["rm", "-f", "/tmp/hvsock-matrix-c3.known_hosts"], timeout=60)
