"""The guests' kernel: Debian's own linux-image package, unpacked into the cache.

Why these steps (lab-recipe.md, "Two machine types"): `-M microvm` boots an uncompressed ELF
vmlinux by PVH, which is 2x faster to sshd than `-M pc` + bzImage; and modules load 4x faster
under TCG once their appended signature is cut off. Everything is idempotent: a step whose
product exists is skipped.
"""
from __future__ import annotations

import lzma
import re
import shutil
import subprocess
from pathlib import Path

from harness.errors import HarnessError
from harness.lab.paths import LabPaths

# Loaded by the guests' init, in this order (vsock_loopback and vhost_vsock fail with
# "unknown symbol" unless vmw_vsock_virtio_transport_common is loaded first).
BASE_MODULES = [
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
    "virtio_mmio", "failover", "net_failover", "virtio_net", "virtio-rng", "netfs", "fscache",
    "9pnet", "9pnet_virtio", "9p", "overlay",
]
L1_MODULES = ["vsock", "vmw_vsock_virtio_transport_common", "vsock_loopback", "vsock_diag",
              "vhost_iotlb", "vhost", "vhost_vsock"]
L2_MODULES = ["vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport", "vsock_diag"]
LOOPBACK_MODULE = "vsock_loopback"  # L2 loads it only when told (hvlab.loopback=1): see guests.py
ALL_MODULES = list(dict.fromkeys(BASE_MODULES + L1_MODULES + L2_MODULES))

SIG_MAGIC = b"~Module signature appended~\n"


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise HarnessError(f"lab: `{' '.join(argv)}` failed: {tail[0]}")
    return proc.stdout


def kernel_package() -> str:
    """linux-image-6.1.0-NN-amd64, the package Debian's linux-image-amd64 currently points at."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"])
    m = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*-amd64)", out)
    if not m:
        raise HarnessError("lab: `apt-cache depends linux-image-amd64` names no linux-image-*-amd64 "
                           "(run apt-get update?)")
    return m.group(1)


def strip_signature(data: bytes) -> bytes:
    """Cut the appended module signature: ... | signature | 12-byte descriptor | magic."""
    if not data.endswith(SIG_MAGIC):
        return data
    desc = data[-len(SIG_MAGIC) - 12:-len(SIG_MAGIC)]
    sig_len = int.from_bytes(desc[8:12], "big")
    end = len(data) - len(SIG_MAGIC) - 12 - sig_len
    if end <= 0:
        raise ValueError("module signature length larger than the module")
    return data[:end]


def vmlinux_from_bzimage(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage: find the XZ stream and decompress it."""
    start = bzimage.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise HarnessError("lab: no XZ payload in the kernel image (unexpected compression)")
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    out = dec.decompress(bzimage[start:])
    if not out.startswith(b"\x7fELF"):
        raise HarnessError("lab: the kernel payload is not an ELF vmlinux")
    return out


def ensure_kernel(paths: LabPaths, progress=print) -> str:
    """Download, unpack, depmod, vmlinux, stripped modules. Returns the kernel version."""
    kdir = paths.kernel_dir
    kdir.mkdir(parents=True, exist_ok=True)
    version_file = kdir / "version"
    if paths.vmlinux.exists() and version_file.exists() and (paths.modules_dir / "vsock.ko").exists():
        return version_file.read_text().strip()
    debs = sorted(kdir.glob("linux-image-*_amd64.deb"))
    if not debs:
        pkg = kernel_package()
        progress(f"downloading {pkg} (apt-get download)")
        _run(["apt-get", "download", pkg], cwd=kdir)
        debs = sorted(kdir.glob("linux-image-*_amd64.deb"))
        if not debs:
            raise HarnessError(f"lab: apt-get download {pkg} left no .deb in {kdir}")
    deb = debs[-1]
    root = kdir / "root"
    if not root.exists():
        progress(f"unpacking {deb.name}")
        tmp = kdir / "root.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(root)
    versions = sorted(p.name for p in (root / "lib" / "modules").iterdir())
    version = versions[-1]
    _run(["depmod", "-b", str(root), version])
    progress(f"kernel {version}: extracting vmlinux, stripping module signatures")
    bz = (root / "boot" / f"vmlinuz-{version}").read_bytes()
    tmp_vmlinux = paths.vmlinux.with_suffix(".tmp")
    tmp_vmlinux.write_bytes(vmlinux_from_bzimage(bz))
    tmp_vmlinux.replace(paths.vmlinux)
    _collect_modules(root / "lib" / "modules" / version, paths.modules_dir)
    version_file.write_text(version + "\n")
    return version


def _collect_modules(moddir: Path, dest: Path) -> None:
    """Copy the modules the init loads, flat, named <module>.ko, signatures stripped."""
    dest.mkdir(parents=True, exist_ok=True)
    deps = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path = line.split(":", 1)[0]
        name = Path(path).name.split(".ko")[0]
        deps[name.replace("-", "_")] = path
    builtin = {Path(l).name.split(".ko")[0].replace("-", "_")
               for l in (moddir / "modules.builtin").read_text().splitlines()}
    for mod in ALL_MODULES:
        key = mod.replace("-", "_")
        if key in builtin:
            continue
        if key not in deps:
            raise HarnessError(f"lab: kernel module {mod} is neither built in nor in modules.dep")
        src = moddir / deps[key]
        data = src.read_bytes()
        if src.name.endswith(".xz"):
            data = lzma.decompress(data)
        elif src.name.endswith(".zst"):
            raise HarnessError(f"lab: {src.name}: zstd-compressed modules are not supported")
        (dest / f"{key}.ko").write_bytes(strip_signature(data))
    (dest / "builtin.txt").write_text("\n".join(sorted(builtin & {m.replace('-', '_') for m in ALL_MODULES})) + "\n")
