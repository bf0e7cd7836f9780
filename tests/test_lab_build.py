"""Lab-in-a-box building blocks, without booting anything: fast, always run.

What could go wrong here breaks every boot silently (a guest that hangs, a signature left on a
module, an inventory the loader refuses, qemu listening beyond loopback), so it is pinned here.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.lab import inventory_file, kernel, qemu
from harness.lab.initramfs import build_cpio, init_script
from harness.lab.keys import write_known_hosts
from harness.lab.paths import LabPaths

REPO = Path(__file__).resolve().parent.parent


def test_strip_signature_cuts_exactly_the_appended_signature():
    body = b"\x7fELF" + b"module body" * 10
    sig = b"S" * 37
    desc = bytes(8) + len(sig).to_bytes(4, "big")
    assert kernel.strip_signature(body + sig + desc + kernel.SIG_MAGIC) == body
    assert kernel.strip_signature(body) == body  # unsigned modules are left alone


def test_strip_signature_rejects_a_length_larger_than_the_module():
    desc = bytes(8) + (10_000).to_bytes(4, "big")
    with pytest.raises(ValueError):
        kernel.strip_signature(b"tiny" + desc + kernel.SIG_MAGIC)


def test_l1_qemu_gets_the_guests_kernel_on_its_command_line(tmp_path):
    paths = LabPaths(tmp_path)
    host, guest = paths.kernel("7.2.13-1"), paths.kernel("6.1.192-2")
    argv = qemu.l1_argv(paths, port=2299, guests=2, host=host, guest=guest)
    assert argv[argv.index("-kernel") + 1] == str(host.vmlinux)
    assert argv[argv.index("-initrd") + 1] == str(host.initramfs)
    append = argv[argv.index("-append") + 1].split()
    assert f"hvlab.gkernel={guest.vmlinux}" in append and f"hvlab.ginitrd={guest.initramfs}" in append
    text = init_script().decode()  # ... and the init starts the guests on exactly those
    assert '-kernel "$gkernel" -initrd "$ginitrd"' in text and "hvlab.gkernel=*) gkernel=" in text


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
def test_cpio_archive_unpacks_with_gnu_cpio(tmp_path):
    blob = build_cpio({"bin": (0o040755, b""), "init": (0o100755, b"#!/bin/sh\necho hi\n")},
                      {"dev/console": (0o020600, 5, 1)})
    proc = subprocess.run(["cpio", "-it"], input=blob, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == ["bin", "dev/console", "init"]


@pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static not installed")
def test_init_script_parses_with_busybox_sh(tmp_path):
    script = tmp_path / "init"
    script.write_bytes(init_script())
    proc = subprocess.run(["/bin/busybox", "sh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_init_writes_the_lab_marker_only_into_the_guests_own_run():
    text = init_script().decode()
    assert "> /newroot/run/hvsock-matrix-lab-guest" in text
    # /newroot/run is a fresh tmpfs mounted by the guest, before the marker is written
    assert text.index("mount -t tmpfs -o mode=0755 run /newroot/run") < text.index("hvsock-matrix-lab-guest\n")
    assert "restrict=on" in text and "hostfwd=tcp:127.0.0.1:" in text


def test_l1_qemu_reaches_nothing_but_a_loopback_forward(tmp_path):
    paths = LabPaths(tmp_path)
    argv = qemu.l1_argv(paths, port=2299, guests=2, host=paths.kernel("1"), guest=paths.kernel("1"))
    netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    assert netdevs == ["user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2299-:22"]
    assert "tcg,thread=multi" in argv and "-pidfile" in argv
    assert argv[:2] == ["timeout", "-k"]  # a forgotten lab dies at its TTL
    append = argv[argv.index("-append") + 1]
    assert "tsc_early_khz=" in append  # without it half the microvm boots hang
    fsdev_root = [a for a in argv if a.startswith("local,id=root")]
    assert fsdev_root and "readonly=on" in fsdev_root[0]


def test_is_our_qemu_refuses_a_pid_that_is_not_our_qemu(tmp_path):
    import os

    assert not qemu.is_our_qemu(os.getpid(), LabPaths(tmp_path))


def test_generated_inventory_loads_and_matches_the_committed_one(tmp_path):
    from harness.inventory import load_inventory

    default = LabPaths(Path.home() / ".cache" / "hvsock-matrix" / "lab")
    committed = (REPO / "inventory" / "lab-in-a-box.yaml").read_text()
    assert inventory_file.inventory_text(default, 2222, 2) == committed
    path = tmp_path / "inv.yaml"
    path.write_text(inventory_file.inventory_text(LabPaths(tmp_path), 2345, 2))
    inv = load_inventory(path)
    assert [n for n in inv.nodes] == ["l1", "vm21", "vm22"]
    assert inv.node("l1").cid == 2 and inv.node("vm21").cid == 21 and inv.node("vm22").cid == 22
    assert inv.node("vm21").parent == "l1" and inv.node("vm21").access.jump == "l1"
    assert inv.node("l1").access.port == 2345 and inv.node("l1").access.host == "127.0.0.1"
    assert all(n.lab_node and n.access.host_key_policy == "reject" for n in inv.nodes.values())
    assert inv.node("vm22").access.connect_timeout >= 300


def test_known_hosts_pins_each_node_at_its_forwarded_port(tmp_path):
    from harness.lab.keys import ensure_keys

    paths = LabPaths(tmp_path)
    ensure_keys(paths, ["l1", "vm21"])
    kh = write_known_hosts(paths, inventory_file.endpoints(2345, 1)).read_text().splitlines()
    assert kh[0].startswith("[127.0.0.1]:2345 ssh-ed25519 ")
    assert kh[1].startswith("[127.0.0.1]:22021 ssh-ed25519 ")
    assert kh[0].split()[2] != kh[1].split()[2]  # one host key per node
    assert (paths.client_key.stat().st_mode & 0o077) == 0


def test_lab_scenarios_resolve_against_the_lab_inventory():
    from harness.inventory import load_inventory
    from harness.scenario import load_cells

    inv = load_inventory(REPO / "inventory" / "lab-in-a-box.yaml")
    kvm = load_cells(REPO / "scenarios" / "linux-kvm.yaml", inv)
    kvm += load_cells(REPO / "scenarios" / "linux-kvm-other-cid.yaml", inv)
    # every placement as stream and as seqpacket, the 12 other-CID cells, 4 dgram cells, and the
    # phase cells (issue 21): 3 server phases and 3 client phases on three paths, 4 unprivileged servers
    phases = [c for c in kvm if (c.server_phase, c.client_phase, c.unprivileged) != ("listening", "connect", False)]
    assert sorted({(c.server_phase, c.client_phase) for c in phases if not c.unprivileged}) == [
        ("bound", "connect"), ("closed", "connect"), ("listening", "bound"), ("listening", "retry"),
        ("listening", "second-cid"), ("none", "connect")]
    assert len(phases) == 6 * 3 + 4 and sum(c.unprivileged for c in phases) == 4
    assert len(kvm) == 3 * 4 * 3 * 4 * 2 + 12 + 4 + len(phases) and not [c for c in kvm if c.skip_reason]
    assert sum(c.socket == "seqpacket" for c in kvm) == 3 * 4 * 3 * 4
    assert len({c.port for c in kvm}) == len(kvm)
    c = [x for x in load_cells(REPO / "scenarios" / "c-kvm-vsock.yaml", inv) if x.label in ("C1", "C2")]
    assert {(x.server_on, x.client_on) for x in c} >= {("vm21", "l1"), ("l1", "vm21")}
    assert not [x for x in c if x.skip_reason]
