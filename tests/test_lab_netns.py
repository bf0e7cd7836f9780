"""`lab up --netns` and namespace nodes, without a boot: the layout, the refusal, the inventory.

The boot itself (namespaces made in l1, guests' qemus in them, the namespace matrix) is
tests/test_lab_netns_boot.py (qemu marker).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import HarnessError, InputError
from harness.inventory import load_inventory
from harness.lab import inventory_file, lifecycle, qemu
from harness.lab import netns as lab_netns
from harness.lab.paths import KernelPaths, LabPaths


def _kernel(tmp_path, vsock_ko: bytes | None, vmlinux: bytes = b"\x7fELF") -> KernelPaths:
    k = KernelPaths(tmp_path / "k")
    k.modules_dir.mkdir(parents=True)
    if vsock_ko is not None:
        (k.modules_dir / "vsock.ko").write_bytes(vsock_ko)
    k.vmlinux.write_bytes(vmlinux)
    return k


def test_a_kernel_without_child_ns_mode_is_refused_in_one_line_naming_it(tmp_path):
    old = _kernel(tmp_path, b"\x7fELF...vsock...ns_mode is not here")
    with pytest.raises(HarnessError) as err:
        lab_netns.check_kernel(old, "6.1.0-57-amd64", "stable 6.1.192-3")
    text = str(err.value)
    assert "\n" not in text and "6.1.0-57-amd64" in text and "--netns" in text


def test_child_ns_mode_in_the_vsock_module_or_a_built_in_vsock_is_accepted(tmp_path):
    lab_netns.check_kernel(_kernel(tmp_path / "a", b"\x7fELF\0child_ns_mode\0ns_mode\0"), "7.2.13+deb14-amd64", "sid")
    lab_netns.check_kernel(_kernel(tmp_path / "b", None, b"\x7fELF\0child_ns_mode\0"), "7.2.0-custom", "7.2.0-1")
    with pytest.raises(HarnessError):
        lab_netns.check_kernel(_kernel(tmp_path / "c", None, b"\x7fELF"), "6.1.0-custom", "6.1.0-1")


def test_l1_is_told_the_namespaces_and_each_guests_own():
    paths = LabPaths(Path("/tmp/hvsock-lab-x"))
    k = KernelPaths(paths.root / "kernels" / "7.2.13-1")
    words = " ".join(qemu.l1_argv(paths, 2231, 3, k, k, netns=True))
    assert "hvlab.netns=1" in words and "hvlab.gnetns=global0,local0,local1" in words
    assert "hvlab.netns" not in " ".join(qemu.l1_argv(paths, 2231, 2, k, k))
    with pytest.raises(HarnessError, match="at most 3 guests"):
        lab_netns.cmdline(4)


def test_up_refuses_more_guests_than_namespaces_before_anything_runs(tmp_path):
    with pytest.raises(HarnessError, match=r"--guests 4: 0..3 with --netns \(global0, local0, local1\)"):
        lifecycle.up(guests=4, netns=True, paths=LabPaths(tmp_path), kernel="sid")
    assert not (tmp_path / "run").exists()


def test_the_netns_lab_inventory_loads_with_each_namespace_a_node_of_l1(tmp_path):
    paths = LabPaths(tmp_path / "cache")
    path = tmp_path / "inventory.yaml"
    path.write_text(inventory_file.inventory_text(paths, 2231, 3, netns=True))
    inv = load_inventory(path)
    assert list(inv.nodes) == ["l1", "l1-global0", "l1-global1", "l1-local0", "l1-local1", "vm21", "vm22", "vm23"]
    l1 = inv.node("l1")
    for ns, mode in lab_netns.NAMESPACES.items():
        node = inv.node(f"l1-{ns}")
        assert node.access.netns == ns and node.facts["vsock_ns_mode"] == mode
        assert (node.role, node.os, node.cid, node.lab_node) == ("host", "linux", 2, True)
        assert node.access.port == l1.access.port == 2231 and node.access.key_file == l1.access.key_file
    assert l1.access.netns is None
    assert {n: inv.node(n).facts.get("host_netns") for n in ("vm21", "vm22", "vm23")} == \
        {"vm21": "global0", "vm22": "local0", "vm23": "local1"}
    plain = tmp_path / "plain.yaml"
    plain.write_text(inventory_file.inventory_text(paths, 2231, 2))
    assert list(load_inventory(plain).nodes) == ["l1", "vm21", "vm22"]


def test_status_names_each_guests_namespace_and_its_mode():
    state = {"netns": True, "guest_netns": inventory_file.guest_netns(3, True)}
    places = lifecycle.node_netns(state)
    assert places["vm22"] == {"netns": "local0", "mode": "local"}
    assert places["vm21"] == {"netns": "global0", "mode": "global"}
    assert places["l1"] == {"netns": None, "mode": "global"}
    assert places["l1-local1"] == {"netns": "local1", "mode": "local"}
    assert lifecycle.node_netns({"guests": 2}) == {}


def _inv(tmp_path, nodes: str):
    path = tmp_path / "inv.yaml"
    path.write_text("inventory: lab\nnodes:\n" + textwrap.indent(textwrap.dedent(nodes), "  "))
    return path


BASE = """\
- {name: h, role: host, os: linux, cid: 2, lab_node: false, facts: {a: 1},
   access: {kind: ssh, host: h.invalid, port: 2200, user: root}}
"""


def test_a_namespace_node_is_its_node_plus_the_namespace(tmp_path):
    inv = load_inventory(_inv(tmp_path, BASE + "- {name: h-ns1, netns: ns1, of: h, facts: {b: 2}, note: n}\n"))
    h, ns = inv.node("h"), inv.node("h-ns1")
    assert (ns.role, ns.os, ns.family, ns.cid, ns.lab_node) == (h.role, h.os, h.family, h.cid, h.lab_node)
    assert ns.access == type(h.access)(**{**h.access.__dict__, "netns": "ns1"})
    assert ns.facts == {"a": 1, "b": 2, "netns": "ns1", "netns_of": "h"}
    assert ns.source.endswith(":5")


@pytest.mark.parametrize("node,line,words", [
    ("- {name: x, netns: ns1}", 5, "netns: needs of:"),
    ("- {name: x, of: h}", 5, "needs netns:"),
    ("- {name: x, netns: ns1, of: nope}", 5, "of 'nope' is not a node"),
    ("- {name: x, netns: ns1, of: h, role: host}", 5, "role is h's"),
    ("- {name: x, netns: ns1, of: h, access: {kind: local}}", 5, "access is h's"),
    ("- {name: x, netns: ../../etc, of: h}", 5, "bad netns name"),
    ("- {name: x, netns: ns1, of: h}\n- {name: y, netns: ns2, of: x}", 6, "itself a namespace node"),
    (("- {name: w, role: host, os: windows, access: {kind: psexec, host: w.invalid}}\n"
      "- {name: x, netns: ns1, of: w}"), 6, "network namespaces are Linux's"),
    ("- {name: z, role: host, os: linux}\n- {name: x, os: linux}", 6, "role: is required"),
])
def test_bad_namespace_nodes_are_one_line_naming_file_and_line(tmp_path, node, line, words):
    path = _inv(tmp_path, BASE + node + "\n")
    with pytest.raises(InputError) as err:
        load_inventory(path)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert err.value.where == f"{path}:{line}"


def test_ssh_commands_of_a_namespace_node_run_under_ip_netns_exec(tmp_path):
    from harness.transports.ssh import SSHTransport

    inv = load_inventory(_inv(tmp_path, BASE + "- {name: h-ns1, netns: ns1, of: h}\n"))
    inside = SSHTransport(inv.node("h-ns1"), inv).command_line(["python3", "probe.py", "serve"])
    outside = SSHTransport(inv.node("h"), inv).command_line(["python3", "probe.py", "serve"])
    assert inside.endswith("hvsock ip netns exec ns1 python3 probe.py serve")
    assert outside.endswith("hvsock python3 probe.py serve")


def test_the_probe_reports_the_vsock_mode_of_the_namespace_it_runs_in(tmp_path):
    from harness.probe.facts import vsock_ns_facts

    (tmp_path / "ns_mode").write_text("local\n")
    (tmp_path / "child_ns_mode").write_text("local\n")
    assert vsock_ns_facts(str(tmp_path)) == {"vsock_ns_mode": "local", "vsock_child_ns_mode": "local"}
    assert vsock_ns_facts(str(tmp_path / "absent")) == {"vsock_ns_mode": None, "vsock_child_ns_mode": None}


def test_a_namespace_node_is_related_to_its_node_and_that_nodes_guests(tmp_path):
    from harness.scenario.expansion import related

    path = tmp_path / "inventory.yaml"
    path.write_text(inventory_file.inventory_text(LabPaths(tmp_path / "cache"), 2231, 3, netns=True))
    inv = load_inventory(path)
    local0 = inv.node("l1-local0")
    assert local0.machine == "l1" and inv.node("l1").machine == "l1"
    assert related(local0, inv.node("l1")) and related(local0, inv.node("l1-global1"))
    assert related(inv.node("vm22"), local0) and related(local0, inv.node("vm21"))
