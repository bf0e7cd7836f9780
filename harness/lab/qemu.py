"""Starting and stopping L1, the lab's "host": one qemu process on this machine, TCG.

Networking choice: qemu runs in this machine's own network namespace with
`-netdev user,restrict=on,hostfwd=tcp:127.0.0.1:<port>-:22`. restrict=on cuts the guest off
from everything outside (no NAT out, no DNS, no host services), and the only way in is the
forward, bound to 127.0.0.1 only. A private network namespace would add nothing to that
isolation but would need a forwarder process between the controller's loopback and the
namespace (one more process to leak and to find by PID), so it is not used.

qemu runs under `timeout` (the lab's TTL, default 4 h) in its own session, so a controller that
crashed or forgot the lab does not leave it running forever; `down` stops it by the PID in its
pid file, after checking that the PID still is our qemu.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.lab import netns as lab_netns
from harness.lab.paths import KernelPaths, LabPaths

QEMU = "qemu-system-x86_64"
# l1's kernel words; its init hands the same to every guest (files/init.sh gboot), so they live here only.
# damon_stat.enabled=N: Linux >= 6.17's DAMON_STAT is on by default in Debian's 7.x kernels; its
# kdamond samples memory every few ms, measured at 17% of an idle sid l1's vCPU under TCG (and the
# same in each sid guest), CPU the nested guests need. Kernels without it ignore the word.
BOOT_WORDS = ("console=ttyS0", "quiet", "loglevel=3", "panic=-1", "tsc=reliable", "mitigations=off",
              "damon_stat.enabled=N")
DEFAULT_TTL = int(os.environ.get("HVSOCK_MATRIX_LAB_TTL", 4 * 3600))


def host_tsc_khz() -> int:
    """Without tsc_early_khz half the microvm boots hang (no PIT/HPET to calibrate against)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000)
    raise HarnessError("lab: no `cpu MHz` in /proc/cpuinfo to compute tsc_early_khz")


def l1_argv(paths: LabPaths, port: int, guests: int, host: KernelPaths, guest: KernelPaths,
            ttl: int = DEFAULT_TTL, memory_mb: int | None = None, netns: bool = False, hybrid: int = 0,
            hybrid_mode: str = "shared") -> list[str]:
    """L1 boots `host`; its init starts the guests on `guest` (vmlinux + initramfs paths, seen over 9p).

    netns: l1's init lays out the vsock network namespaces and starts each guest's qemu in its
    own (harness/lab/netns.py). hybrid > 0: l1 also runs the vhost-device-vsock backend
    (harness/lab/backend.py) and that many hybrid guests (vm31..) whose vsock device is vhost-user.
    """
    memory_mb = memory_mb or 1536 + 768 * (guests + hybrid)
    append = " ".join([
        *BOOT_WORDS, f"tsc_early_khz={host_tsc_khz()}",
        "hvlab.name=l1 hvlab.level=1", f"hvlab.cache={paths.root}", f"hvlab.guests={guests}",
        f"hvlab.ttl={ttl}", f"hvlab.gkernel={guest.vmlinux}", f"hvlab.ginitrd={guest.initramfs}",
        *(lab_netns.cmdline(guests) if netns else []),
        *_hybrid_words(hybrid, hybrid_mode),
    ])
    if any(c.isspace() for c in str(guest.dir)):
        raise HarnessError(f"lab: the kernel cache path {guest.dir} has a space (the kernel command line splits it)")
    return [
        "timeout", "-k", "10", str(ttl),
        QEMU, "-name", "hvsock-matrix-lab-l1",
        "-M", "microvm,x-option-roms=off,rtc=on", "-accel", "tcg,thread=multi",
        "-smp", "2", "-m", str(memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", f"file:{paths.l1_console}",
        "-kernel", str(host.vmlinux), "-initrd", str(host.initramfs), "-append", append,
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-device,fsdev=root,mount_tag=root",
        "-fsdev", f"local,id=run,path={paths.run_dir},security_model=none,multidevs=remap",
        "-device", "virtio-9p-device,fsdev=run,mount_tag=labrun",
        "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-device,netdev=n0",
        "-device", "virtio-rng-device",
        "-pidfile", str(paths.l1_pidfile),
    ]


def _hybrid_words(hybrid: int, mode: str) -> list[str]:
    if not hybrid:
        return []
    from harness.lab import backend

    if mode not in backend.MODES:
        raise HarnessError(f"lab: hybrid backend mode {mode!r}: one of {', '.join(backend.MODES)}")
    return [f"hvlab.hybrid={hybrid}", f"hvlab.vdv={backend.binary()}", f"hvlab.hmode={mode}"]


def start_l1(paths: LabPaths, port: int, guests: int, host: KernelPaths, guest: KernelPaths,
             netns: bool = False, hybrid: int = 0, hybrid_mode: str = "shared") -> subprocess.Popen:
    argv = l1_argv(paths, port, guests, host, guest, netns=netns, hybrid=hybrid, hybrid_mode=hybrid_mode)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    with open(paths.run_dir / "l1.qemu.log", "wb") as log:  # qemu keeps its own copy of the descriptor
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def is_our_qemu(pid: int, paths: LabPaths) -> bool:
    """The PID is alive and its command line names our pid file (guards against PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode()).name == QEMU and str(paths.l1_pidfile).encode() in cmdline


def running_pid(paths: LabPaths) -> int | None:
    pid = read_pid(paths.l1_pidfile)
    return pid if pid and is_our_qemu(pid, paths) else None


def stop_l1(paths: LabPaths, timeout: float = 15.0) -> int | None:
    """SIGTERM our qemu (SIGKILL after `timeout`); returns the PID stopped, or None."""
    pid = running_pid(paths)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_our_qemu(pid, paths):
        time.sleep(0.2)
    if is_our_qemu(pid, paths):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    return pid
