"""Lab-in-a-box: a real Linux vsock lab under qemu (L1 "host" + L2 guests), for users and CI.

Public API (the pytest plugin calls ensure_lab when no --inventory is given):
    ensure_lab(guests=2, progress=..., kernel=None, guest_kernel=None) -> Path
                                              boot or reuse the lab, return its inventory path
    lab_is_up() -> bool
    running_lab_inventory() -> Path | None   the written inventory of the lab that is up, if any
The parts, one idea per file: paths (cache layout), debian_sources + apt_client + kernel_spec
(SPEC -> Debian packages), kernel (packages -> vmlinux + stripped modules), module_order,
initramfs (+ files/init.sh, the guests' PID 1), keys, qemu (L1 launch/stop), readiness (SSH
banners), progress (console tail), inventory_file, lifecycle (up/status/down).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def ensure_lab(guests: int = 2, progress: Callable[[str], None] | None = None,
               kernel: str | None = None, guest_kernel: str | None = None) -> Path:
    from harness.lab import lifecycle
    from harness.lab.progress import plain_progress

    state = lifecycle.up(guests=guests, progress=progress or plain_progress, kernel=kernel, guest_kernel=guest_kernel)
    return Path(state["inventory"])


def lab_is_up() -> bool:
    from harness.lab import lifecycle

    return lifecycle.is_up()


def running_lab_inventory() -> Path | None:
    """The inventory the running lab wrote (its port, its --netns / --hybrid nodes), or None.

    Read at collection, so a `lab up --netns` lab's namespace nodes are cells to run, not "no node".
    """
    from harness.lab import lifecycle
    from harness.lab.paths import LabPaths

    paths = LabPaths.default()
    if not lifecycle.is_up(paths):
        return None
    written = (lifecycle.read_state(paths) or {}).get("inventory")
    return Path(written) if written and Path(written).is_file() else None
