"""Where the lab keeps everything it builds and runs: one cache folder outside the repo.

Default ~/.cache/hvsock-matrix/lab, or $HVSOCK_MATRIX_CACHE. The guests see this folder at the
same path (they mount this machine's / read-only over 9p), so kernels, keys and the initramfs
are found in L1 and L2 without copying.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("HVSOCK_MATRIX_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "hvsock-matrix" / "lab"
    return base.resolve()


@dataclass(frozen=True)
class KernelPaths:
    """One Debian kernel version, built for the lab: kept across `down`, shared by every lab using it."""

    dir: Path

    @property
    def debs(self) -> Path:
        return self.dir / "debs"

    @property
    def vmlinux(self) -> Path:
        return self.dir / "vmlinux"

    @property
    def modules_dir(self) -> Path:
        return self.dir / "modules"  # stripped .ko files by module name, and <stage>.order

    @property
    def initramfs(self) -> Path:
        return self.dir / "initramfs.cpio"  # its modules are this kernel's

    @property
    def release_file(self) -> Path:
        return self.dir / "release"  # `uname -r` of this kernel; written last (the build is complete)


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @classmethod
    def default(cls) -> LabPaths:
        return cls(cache_root())

    # build products (kept across `down`: rebuilding them costs a download)
    @property
    def kernels_dir(self) -> Path:
        return self.root / "kernels"

    def kernel(self, debian_version: str) -> KernelPaths:
        """The build folder of one Debian kernel version (e.g. kernels/6.12.95-1~bpo12+1)."""
        return KernelPaths(self.kernels_dir / debian_version.replace(":", "_").replace("/", "_"))

    @property
    def apt_dir(self) -> Path:
        return self.root / "apt"  # the private apt configuration (backports, sid)

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def client_key(self) -> Path:
        return self.keys_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.keys_dir / "known_hosts"

    def host_key(self, node: str) -> Path:
        return self.keys_dir / f"ssh_host_ed25519_key.{node}"

    # run state (removed by `down`)
    @property
    def run_dir(self) -> Path:
        """Shared read-write with L1 over 9p: pid files, serial logs, L2 logs, ready marks."""
        return self.root / "run"

    @property
    def l1_pidfile(self) -> Path:
        return self.run_dir / "l1.pid"

    @property
    def l1_console(self) -> Path:
        return self.run_dir / "l1.console.log"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "lab.json"

    @property
    def inventory(self) -> Path:
        return self.run_dir / "inventory.yaml"

    def guest_console(self, node: str) -> Path:
        return self.run_dir / f"{node}.console.log"

    @property
    def lock(self) -> Path:
        return self.root / "lab.lock"


def tools_root() -> Path:
    """Tools the lab builds once and every lab cache reuses (vhost-device-vsock): $HVSOCK_MATRIX_TOOLS
    or ~/.cache/hvsock-matrix/tools. Under / as every path the guests see, so l1 runs them over 9p."""
    env = os.environ.get("HVSOCK_MATRIX_TOOLS")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "hvsock-matrix" / "tools"
    return base.resolve()
