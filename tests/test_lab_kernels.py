"""Kernel SPECs for the lab: apt sources, version picking, split packages, modules.dep, bzImage.

No download and no boot here (tests/test_lab_kernel_boot.py boots one): the inputs are the
shapes Debian's archive really has (madison rows, Depends fields and modules.dep lines copied
from bookworm, bookworm-backports and sid on 2026-11-23).
"""
from __future__ import annotations

import lzma
import shutil
import struct
import subprocess

import pytest

from harness.errors import HarnessError
from harness.lab import debian_sources, kernel, kernel_spec, module_order
from harness.lab.apt_client import PrivateApt

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
Enabled: no
URIs: http://off.example.invalid/debian
Suites: bookworm
Components: main
"""

MADISON = [("7.2.13-1", "sid"), ("6.12.95-1~bpo12+1", "bookworm-backports"), ("6.1.192-2", "bookworm-security"),
           ("6.1.190-1", "bookworm")]

SID_IMAGE_DEPENDS = ["linux-base (>= 4.17~)", "dracut", "initramfs-tools (>= 0.120+deb8u2)", "linux-initramfs-tool",
                     "linux-base-7.2.13+deb14-amd64 (= 7.2.13-1)", "linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1)",
                     "linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)"]

# modules.dep as depmod writes it (paths shortened): 6.1 still has fscache, 6.12+ folded it into netfs
DEP_61 = """kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko: kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko
"""
DEP_COMMON = """kernel/drivers/virtio/virtio_mmio.ko{z}:
kernel/net/core/failover.ko{z}:
kernel/drivers/net/net_failover.ko{z}: kernel/net/core/failover.ko{z}
kernel/drivers/net/virtio_net.ko{z}: kernel/drivers/net/net_failover.ko{z} kernel/net/core/failover.ko{z}
kernel/drivers/char/hw_random/virtio-rng.ko{z}:
kernel/fs/overlayfs/overlay.ko{z}:
kernel/net/vmw_vsock/vsock.ko{z}:
kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko{z}: kernel/net/vmw_vsock/vsock.ko{z}
kernel/net/vmw_vsock/vsock_loopback.ko{z}: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko{z} kernel/net/vmw_vsock/vsock.ko{z}
kernel/net/vmw_vsock/vsock_diag.ko{z}: kernel/net/vmw_vsock/vsock.ko{z}
kernel/drivers/vhost/vhost_iotlb.ko{z}:
kernel/drivers/vhost/vhost.ko{z}: kernel/drivers/vhost/vhost_iotlb.ko{z}
kernel/drivers/vhost/vhost_vsock.ko{z}: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko{z} kernel/drivers/vhost/vhost.ko{z} kernel/drivers/vhost/vhost_iotlb.ko{z} kernel/net/vmw_vsock/vsock.ko{z}
kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko{z}: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko{z} kernel/net/vmw_vsock/vsock.ko{z}
"""
DEP_612 = """kernel/fs/netfs/netfs.ko.xz:
kernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz
kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
"""
BUILTIN = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_pci.ko\n"


def test_machine_sources_read_deb822_and_one_line_files_and_skip_disabled_ones(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example.invalid/d "
                                           "trixie main contrib\ndeb-src http://src.example.invalid/d trixie main\n")
    (tmp_path / "sources.list.d" / "x.list.disabled-by-farm").write_text("deb http://no.example.invalid/ x main\n")
    sources = debian_sources.machine_sources(tmp_path)
    assert [(s.uri, s.suites) for s in sources] == [
        ("http://one.example.invalid/d", ("trixie",)),
        ("http://mirror.example.invalid/debian", ("bookworm", "bookworm-updates")),
        ("http://mirror.example.invalid/debian-security", ("bookworm-security",))]
    assert sources[0].signed_by == "/k.gpg" and sources[0].components == ("main", "contrib")
    mirror = debian_sources.debian_mirror(sources, "bookworm")
    assert mirror.uri == "http://mirror.example.invalid/debian"
    with pytest.raises(HarnessError, match="no apt source of this machine serves `forky main`"):
        debian_sources.debian_mirror(sources, "forky")


def test_private_sources_add_backports_and_sid_on_the_machines_own_mirror(tmp_path):
    sources = debian_sources._deb822_sources(DEB822)
    mirror = debian_sources.debian_mirror(sources, "bookworm")
    text = PrivateApt(tmp_path, sources, extra=[(mirror, ("bookworm-backports", "sid"))]).sources_text()
    keyring = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
    assert f"deb {keyring} http://mirror.example.invalid/debian sid main" in text
    assert f"deb {keyring} http://mirror.example.invalid/debian bookworm-backports main" in text
    assert f"deb {keyring} http://mirror.example.invalid/debian-security bookworm-security main" in text
    assert "off.example.invalid" not in text
    opts = " ".join(PrivateApt(tmp_path, sources).apt.options)
    assert f"Dir::Etc::sourcelist={tmp_path}/sources.list" in opts and "Dir::Etc::sourceparts=-" in opts
    assert f"Dir::State={tmp_path}/state" in opts and f"Dir::Cache={tmp_path}/cache" in opts


def test_codename_comes_from_os_release(tmp_path):
    path = tmp_path / "os-release"
    path.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n')
    assert debian_sources.codename(path) == "bookworm"
    path.write_text("ID=alpine\n")
    with pytest.raises(HarnessError, match="VERSION_CODENAME"):
        debian_sources.codename(path)


@pytest.mark.parametrize("spec,version", [("stable", "6.1.192-2"), ("backports", "6.12.95-1~bpo12+1"),
                                          ("sid", "7.2.13-1"), ("6.1.190-1", "6.1.190-1")])
def test_each_spec_picks_its_suites_newest_version(spec, version):
    assert kernel_spec.pick_version(spec, MADISON, "bookworm") == version


def test_a_version_apt_does_not_know_and_a_bad_spec_are_one_line():
    with pytest.raises(HarnessError, match=r"kernel `6.1.1-1`: no linux-image-amd64 version matches \(apt knows: 7.2"):
        kernel_spec.pick_version("6.1.1-1", MADISON, "bookworm")
    for bad in ("latest", "sid; rm -rf /", "", "../x"):
        with pytest.raises(HarnessError, match="expected stable, backports, sid or a Debian package version"):
            kernel_spec.check_spec(bad)


def test_split_kernel_packages_are_fetched_with_the_image_at_its_version():
    image = kernel_spec.image_package(["linux-base-amd64", "linux-image-7.2.13+deb14-amd64"], "sid")
    assert image == "linux-image-7.2.13+deb14-amd64"
    assert kernel_spec.companion_packages(image, "7.2.13-1", SID_IMAGE_DEPENDS) == [
        "linux-base-7.2.13+deb14-amd64", "linux-binary-7.2.13+deb14-amd64", "linux-modules-7.2.13+deb14-amd64"]
    # 6.1 / 6.12: one package holds everything
    assert kernel_spec.companion_packages("linux-image-6.1.0-56-amd64", "6.1.192-2",
                                          ["kmod", "linux-base (>= 4.3~)", "initramfs-tools (>= 0.120+deb8u2)"]) == []


def _moddir(tmp_path, dep_text):
    (tmp_path / "modules.dep").write_text(dep_text)
    (tmp_path / "modules.builtin").write_text(BUILTIN)
    return tmp_path


@pytest.mark.parametrize("dep_text", [DEP_61 + DEP_COMMON.format(z=""), DEP_612 + DEP_COMMON.format(z=".xz")],
                         ids=["6.1", "6.12+"])
def test_load_order_comes_from_modules_dep_dependencies_first(tmp_path, dep_text):
    moddir = _moddir(tmp_path, dep_text)
    deps = module_order.read_modules_dep(moddir)
    orders = module_order.stage_orders(deps, module_order.read_builtin(moddir))
    loaded: list[str] = []
    for stage in ("base", "l1"):
        for name in orders[stage]:
            assert all(d in loaded for d in deps[name][1]), f"{name} before its dependencies"
            loaded.append(name)
    assert "virtio_pci" not in orders["base"] and "virtio_rng" in orders["base"]  # built in / dash renamed
    assert ("fscache" in orders["base"]) == ("fscache.ko:" in dep_text)
    assert orders["l2"] == ["vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport", "vsock_diag"]
    assert orders["loopback"] == ["vsock_loopback"]  # its dependencies came with l2
    assert len(loaded) == len(set(loaded))


def test_a_module_missing_from_the_kernel_is_named(tmp_path):
    moddir = _moddir(tmp_path, DEP_612)
    with pytest.raises(HarnessError, match=r"kernel 9\.9: module virtio_mmio is neither built in nor in modules\.dep"):
        module_order.stage_orders(module_order.read_modules_dep(moddir), set(), "9.9")


def _bzimage(payload: bytes, size: int) -> bytes:
    """A bzImage as arch/x86/boot/header.S lays it out: setup sectors, HdrS, payload_offset/_length."""
    setup_sects = 3
    head = bytearray((setup_sects + 1) * 512)
    head[0x1f1] = setup_sects
    head[0x202:0x206] = b"HdrS"
    body = b"decompressor-stub" * 20
    struct.pack_into("<II", head, 0x248, len(body), len(payload) + 4)
    return bytes(head) + body + payload + struct.pack("<I", size) + b"padding"


def test_vmlinux_comes_out_of_an_xz_bzimage():
    elf = b"\x7fELF" + b"kernel" * 1000
    assert kernel.vmlinux_from_bzimage(_bzimage(lzma.compress(elf, format=lzma.FORMAT_XZ), len(elf))) == elf
    with pytest.raises(HarnessError, match="not the ELF vmlinux its header announces"):
        kernel.vmlinux_from_bzimage(_bzimage(lzma.compress(elf, format=lzma.FORMAT_XZ), len(elf) + 1))
    with pytest.raises(HarnessError, match="no x86 boot header"):
        kernel.vmlinux_from_bzimage(b"\x7fELF" * 400)


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd not installed")
def test_vmlinux_comes_out_of_a_zstd_bzimage_as_6_12_and_later_ship_it():
    elf = b"\x7fELF" + b"newer kernel" * 1000
    packed = subprocess.run(["zstd", "-19", "-q", "-c"], input=elf, capture_output=True, check=True).stdout
    assert kernel.vmlinux_from_bzimage(_bzimage(packed, len(elf))) == elf


def test_compressed_signed_module_is_decompressed_then_stripped(tmp_path):
    body = b"\x7fELF" + b"vsock" * 100
    signed = body + b"S" * 40 + bytes(8) + (40).to_bytes(4, "big") + kernel.SIG_MAGIC
    (tmp_path / "vsock.ko.xz").write_bytes(lzma.compress(signed, format=lzma.FORMAT_XZ))
    assert kernel.module_bytes(tmp_path / "vsock.ko.xz") == body
    if shutil.which("zstd"):
        packed = subprocess.run(["zstd", "-q", "-c"], input=signed, capture_output=True, check=True).stdout
        (tmp_path / "vsock.ko.zst").write_bytes(packed)
        assert kernel.module_bytes(tmp_path / "vsock.ko.zst") == body


def test_kernel_files_are_found_in_both_the_old_and_the_merged_usr_layout(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "boot").mkdir(parents=True)
    (old / "lib" / "modules" / "6.1.0-56-amd64").mkdir(parents=True)
    (old / "boot" / "vmlinuz-6.1.0-56-amd64").write_bytes(b"bz")
    (new / "usr" / "lib" / "modules" / "7.2.13+deb14-amd64").mkdir(parents=True)
    (new / "usr" / "lib" / "modules" / "7.2.13+deb14-amd64" / "vmlinuz").write_bytes(b"bz")
    assert kernel.vmlinuz_path(old, "6.1.0-56-amd64") == old / "boot" / "vmlinuz-6.1.0-56-amd64"
    assert kernel.vmlinuz_path(new, "7.2.13+deb14-amd64") == new / "usr/lib/modules/7.2.13+deb14-amd64/vmlinuz"


def test_lab_up_with_a_bad_kernel_spec_is_one_line_and_touches_nothing(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("HVSOCK_MATRIX_CACHE", str(tmp_path / "cache"))
    assert main(["lab", "up", "--kernel", "stable", "--guest-kernel", "6.1;reboot"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kernel `6.1;reboot`: expected stable, backports, sid" in err
    assert not (tmp_path / "cache").exists()
