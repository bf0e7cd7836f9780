"""The guests' initramfs: busybox, the lab init script, and the modules it loads (~2 MB).

Written as a newc cpio directly from Python, so /dev/console can be a device node without
mknod and the archive is the same on every build (no timestamps, fixed owners).
"""
from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from harness.errors import HarnessError
from harness.lab.kernel import LOOPBACK_MODULE
from harness.lab.module_order import STAGES
from harness.lab.paths import KernelPaths

BUSYBOX = Path("/bin/busybox")


def _entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    out = head + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def build_cpio(files: dict[str, tuple[int, bytes]], nodes: dict[str, tuple[int, int, int]]) -> bytes:
    """files: path -> (mode, data), dirs have data b"" and a directory mode; nodes: path -> (mode, major, minor)."""
    parts, ino = [], 1
    for path in sorted(set(files) | set(nodes)):
        ino += 1
        if path in nodes:
            mode, major, minor = nodes[path]
            parts.append(_entry(path, mode, rdev=(major, minor), ino=ino))
        else:
            mode, data = files[path]
            parts.append(_entry(path, mode, data, ino=ino))
    parts.append(_entry("TRAILER!!!", 0))
    blob = b"".join(parts)
    return blob + b"\0" * (-len(blob) % 512)


def init_script() -> bytes:
    return resources.files("harness.lab").joinpath("files/init.sh").read_bytes()


def ensure_initramfs(paths: KernelPaths, progress=print) -> Path:
    """Build (or keep, when its inputs did not change) one kernel's initramfs (L1 and L2 on it)."""
    if not BUSYBOX.exists():
        raise HarnessError("lab: /bin/busybox missing: apt-get install busybox-static")
    modules = sorted(paths.modules_dir.glob("*.ko"))
    orders = {stage: paths.modules_dir / f"{stage}.order" for stage in STAGES}
    digest = hashlib.sha256(init_script() + BUSYBOX.read_bytes())
    for m in modules + list(orders.values()):
        digest.update(m.name.encode() + m.read_bytes())
    stamp = paths.initramfs.with_suffix(".sha256")
    if paths.initramfs.exists() and stamp.exists() and stamp.read_text().strip() == digest.hexdigest():
        return paths.initramfs
    progress("building initramfs (busybox + init + modules)")
    d, f, x = 0o040755, 0o100644, 0o100755
    files: dict[str, tuple[int, bytes]] = {p: (d, b"") for p in
                                           ("bin", "dev", "proc", "sys", "tmp", "modules", "run")}
    files["init"] = (x, init_script())
    files["bin/busybox"] = (x, BUSYBOX.read_bytes())
    for m in modules:
        files[f"modules/{m.name}"] = (f, m.read_bytes())
    for stage, order in orders.items():
        files[f"modules/{stage}.order"] = (f, order.read_bytes())
    if LOOPBACK_MODULE + ".ko" not in {m.name for m in modules}:
        raise HarnessError(f"lab: {paths.modules_dir} has no {LOOPBACK_MODULE}.ko (incomplete kernel build)")
    nodes = {"dev/console": (0o020600, 5, 1), "dev/null": (0o020666, 1, 3)}
    tmp = paths.initramfs.with_suffix(".tmp")
    tmp.write_bytes(build_cpio(files, nodes))
    tmp.replace(paths.initramfs)
    stamp.write_text(digest.hexdigest() + "\n")
    return paths.initramfs
