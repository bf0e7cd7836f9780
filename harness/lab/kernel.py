"""The guests' kernel: a Debian linux-image package (any version), unpacked into the cache.

Why these steps (lab-recipe.md, "Two machine types"): `-M microvm` boots an uncompressed ELF
vmlinux by PVH, which is 2x faster to sshd than `-M pc` + bzImage; and modules load 4x faster
under TCG once their appended signature is cut off. Newer kernels add work: the bzImage payload
is zstd (6.12+), modules are .ko.xz (signed before compression: decompress, then strip), the
files live under /usr/lib/modules (7.x: vmlinuz there too, in a separate linux-binary package),
and module names change (fscache went into netfs): the load order comes from modules.dep.
Each version builds into its own folder, once; a folder is complete when its `release` exists.
"""
from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.lab import module_order
from harness.lab.apt_client import run_tool
from harness.lab.kernel_spec import ResolvedKernel, resolve
from harness.lab.paths import KernelPaths, LabPaths

SIG_MAGIC = b"~Module signature appended~\n"
LOOPBACK_MODULE = "vsock_loopback"  # L2 loads it only when told (hvlab.loopback=1): see init.sh
# Compressed payloads a bzImage may carry (arch/x86/boot/compressed/Makefile), by magic.
XZ_MAGIC, ZSTD_MAGIC, GZIP_MAGIC = b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"\x1f\x8b\x08"


@dataclass(frozen=True)
class Kernel:
    """A built kernel: its Debian version, `uname -r`, and where vmlinux/modules/initramfs are."""

    spec: str
    version: str
    release: str
    paths: KernelPaths

    def describe(self) -> dict:
        return {"spec": self.spec, "version": self.version, "release": self.release}


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


def _zstd_decompress(data: bytes, what: str) -> bytes:
    """zstd is not in Python's stdlib before 3.14: the zstd tool (Debian package zstd) does it."""
    try:
        proc = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, timeout=300)
    except FileNotFoundError:
        raise HarnessError(f"lab: {what} is zstd-compressed and zstd is missing: apt-get install zstd") from None
    if proc.returncode != 0:
        raise HarnessError(f"lab: {what}: zstd failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    return proc.stdout


def bzimage_payload(bzimage: bytes) -> bytes:
    """The compressed kernel inside a bzImage, cut by its boot header (payload_offset/_length).

    Documentation/arch/x86/boot.rst: the protected-mode code starts at (setup_sects + 1) * 512,
    payload_offset (0x248) and payload_length (0x24c) are relative to it. The payload ends with
    the 4-byte little-endian uncompressed size, which the zstd tool rejects as trailing data.
    """
    if bzimage[0x202:0x206] != b"HdrS":
        raise HarnessError("lab: the kernel image has no x86 boot header (not a bzImage)")
    setup_sects = bzimage[0x1f1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if not length or start + length > len(bzimage):
        raise HarnessError("lab: the kernel image's payload_offset/payload_length point outside it")
    return bzimage[start:start + length]


def vmlinux_from_bzimage(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage (xz, zstd or gzip payload), for PVH boot under microvm."""
    payload = bzimage_payload(bzimage)
    if payload.startswith(XZ_MAGIC):
        out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif payload.startswith(ZSTD_MAGIC):
        out = _zstd_decompress(payload[:-4], "the kernel image")
    elif payload.startswith(GZIP_MAGIC):
        out = gzip.decompress(payload)  # its own footer ends with the size
    else:
        raise HarnessError(f"lab: unknown kernel compression (payload starts {payload[:4].hex()})")
    size = struct.unpack("<I", payload[-4:])[0]
    if not out.startswith(b"\x7fELF") or len(out) != size:
        raise HarnessError("lab: the kernel payload is not the ELF vmlinux its header announces")
    return out


def module_bytes(path: Path) -> bytes:
    """A module's ELF, decompressed (.ko.xz/.ko.zst/.ko.gz) and with its signature cut."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        data = lzma.decompress(data)
    elif path.name.endswith(".zst"):
        data = _zstd_decompress(data, path.name)
    elif path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return strip_signature(data)


def modules_root(root: Path) -> Path:
    """lib/modules (up to 6.x) or usr/lib/modules (7.x, merged /usr): the one holding a release."""
    for candidate in (root / "lib" / "modules", root / "usr" / "lib" / "modules"):
        if candidate.is_dir() and any(candidate.iterdir()):
            return candidate
    raise HarnessError(f"lab: no lib/modules/<release> in the unpacked kernel ({root})")


def vmlinuz_path(root: Path, release: str) -> Path:
    for candidate in (root / "boot" / f"vmlinuz-{release}",
                      modules_root(root) / release / "vmlinuz"):
        if candidate.is_file():
            return candidate
    raise HarnessError(f"lab: kernel {release}: no vmlinuz in /boot or /usr/lib/modules/{release}")


def ensure_kernel(paths: LabPaths, spec: str = "stable", progress=print) -> Kernel:
    """Resolve SPEC, then download, unpack, depmod, vmlinux, stripped modules (each step once)."""
    resolved = resolve(spec, paths.apt_dir, progress)
    kp = paths.kernel(resolved.version)
    if kp.release_file.exists() and kp.vmlinux.exists():
        return Kernel(spec, resolved.version, kp.release_file.read_text().strip(), kp)
    return Kernel(spec, resolved.version, _build(resolved, kp, progress), kp)


def _build(resolved: ResolvedKernel, kp: KernelPaths, progress) -> str:
    kp.dir.mkdir(parents=True, exist_ok=True)
    wanted = [p.split("=", 1)[0] for p in resolved.packages]
    have = {deb.name.split("_", 1)[0] for deb in kp.debs.glob("*.deb")}
    missing = [p for p in resolved.packages if p.split("=", 1)[0] not in have]
    if missing:
        progress(f"kernel {resolved.spec}: apt-get download {' '.join(missing)} ({resolved.apt.label})")
        tmp = kp.dir / "debs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        resolved.apt.download(missing, tmp)
        kp.debs.mkdir(exist_ok=True)
        for deb in tmp.glob("*.deb"):
            deb.replace(kp.debs / deb.name)
        shutil.rmtree(tmp, ignore_errors=True)
    debs = [deb for deb in sorted(kp.debs.glob("*.deb")) if deb.name.split("_", 1)[0] in wanted]
    if len(debs) != len(wanted):
        raise HarnessError(f"lab: apt-get download left {len(debs)} of {len(wanted)} packages in {kp.debs}")
    root = kp.dir / "root"
    if not root.exists():
        progress(f"kernel {resolved.spec}: unpacking {', '.join(d.name for d in debs)}")
        tmp = kp.dir / "root.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for deb in debs:
            run_tool(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(root)
    moddir_root = modules_root(root)
    release = sorted(p.name for p in moddir_root.iterdir())[-1]
    if not (root / "lib" / "modules").exists():  # depmod -b reads <root>/lib/modules
        (root / "lib").symlink_to("usr/lib")
    run_tool(["depmod", "-b", str(root), release])
    progress(f"kernel {release}: extracting vmlinux, stripping module signatures")
    tmp_vmlinux = kp.vmlinux.with_suffix(".tmp")
    tmp_vmlinux.write_bytes(vmlinux_from_bzimage(vmlinuz_path(root, release).read_bytes()))
    tmp_vmlinux.replace(kp.vmlinux)
    collect_modules(moddir_root / release, kp.modules_dir, release)
    kp.release_file.write_text(release + "\n")
    shutil.rmtree(root, ignore_errors=True)  # 140 MB; the .debs stay as the download cache
    return release


def collect_modules(moddir: Path, dest: Path, release: str = "") -> dict[str, list[str]]:
    """Copy every module the init loads, flat, named <module>.ko, signatures stripped, plus
    one <stage>.order file per init stage (from modules.dep). Returns the stage orders."""
    deps = module_order.read_modules_dep(moddir)
    orders = module_order.stage_orders(deps, module_order.read_builtin(moddir), release)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in dict.fromkeys(m for order in orders.values() for m in order):
        (tmp / f"{name}.ko").write_bytes(module_bytes(moddir / deps[name][0]))
    for stage, order in orders.items():
        (tmp / f"{stage}.order").write_text(" ".join(order) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return orders
