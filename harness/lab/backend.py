"""The hybrid vsock backend of the lab: rust-vmm's vhost-device-vsock, built once by scripts/setup.sh.

Hybrid vsock (Firecracker, Cloud Hypervisor, every vhost-user VMM): the guest sees an ordinary
virtio-vsock device, but the host side is a Unix socket per guest. QEMU 7.2's
`vhost-user-vsock-device` hands the device's virtqueues to this backend, which runs inside l1
only (l1 sees this machine's / over 9p, so it runs the cached binary from the same path).
The version is pinned: the matrix measured is that version's (e.g. 0.3.0 sends no RST for a
guest connect to an absent host port: thread_backend.rs `enq_rst` is a TODO).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from harness.errors import HarnessError
from harness.lab.paths import tools_root

NAME = "vhost-device-vsock"
VERSION = "0.3.0"
MODES = ("shared", "per-guest")  # one backend for every hybrid guest (sibling routing), or one each
# In l1's own /run tmpfs (never on 9p, never on this machine): the vhost-user control sockets and
# each guest's hybrid UDS. The probe refuses hybrid paths outside it (harness/probe.py).
HYBRID_RUN_DIR = "/run/hvlab/hybrid"
GROUP = "lab"  # the hybrid guests' sibling group
OTHER_GROUP_CID = 39  # a device of the shared backend in another group, with no guest attached
OTHER_GROUP = "other"


def install_root() -> Path:
    """`cargo install --root` of the pinned version (scripts/setup.sh builds it there)."""
    return tools_root() / f"{NAME}-{VERSION}"


def binary() -> Path:
    return install_root() / "bin" / NAME


def uds_path(guest: str) -> str:
    """The hybrid UDS of one guest, as l1 sees it: host apps connect here, listen on <this>_<port>."""
    return f"{HYBRID_RUN_DIR}/{guest}.vsock"


def check_binary() -> str:
    """The backend's version line (`vhost-device-vsock 0.3.0`), or one line saying how to get it."""
    path = binary()
    if not path.is_file():
        raise HarnessError(f"lab: --hybrid needs {NAME} {VERSION} at {path}: run scripts/setup.sh "
                           f"(it builds it with cargo install --version {VERSION} --locked)")
    if any(c.isspace() for c in str(path)):
        raise HarnessError(f"lab: the backend path {path} has a space (the kernel command line splits it)")
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"lab: {path} --version failed: {exc}") from None
    line = (out.stdout.strip().splitlines() or [""])[0]
    if out.returncode != 0 or line.split()[-1:] != [VERSION]:
        raise HarnessError(f"lab: {path} is not {NAME} {VERSION} (it says {line or out.stderr.strip()[:100]!r})")
    return line
