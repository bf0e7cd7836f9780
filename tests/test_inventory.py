"""Inventory loading: defaults, canonical values, cross-node rules and the lab-node safety rule."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.inventory import LAB_NODE_ENV, load_inventory

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventory" / "hyperv-lab.example.yaml"


def write(tmp_path, text, name="inv.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_example_inventory_loads_with_documented_ids():
    inv = load_inventory(EXAMPLE)
    assert inv.name == "hyperv-lab"
    assert list(inv.nodes) == ["hv-host", "win-vm", "linux-vm-hv", "kvm-host", "kvm-guest"]
    assert inv.node("win-vm").vm_id == "b50f20e6-cf19-1796-ba60-d9cfe2d8fe29"
    assert inv.node("linux-vm-hv").vm_id == "f952c5ef-ea6c-4c83-b52c-38f31cf68b61"
    assert inv.node("kvm-guest").cid == 21
    assert [n.name for n in inv.children("hv-host")] == ["win-vm", "linux-vm-hv"]


def test_example_inventory_reaches_hosts_only_under_invalid_and_by_reference():
    inv = load_inventory(EXAMPLE)
    for node in inv.nodes.values():
        host = node.access.host
        assert host.endswith(".invalid") or host.startswith("192.0.2."), host  # TEST-NET behind a jump
        if node.access.kind == "psexec":
            assert node.access.password_env and node.access.password_env.isupper()
    assert inv.node("kvm-guest").access.jump == "kvm-host"


def test_family_defaults_follow_the_os(tmp_path):
    inv = load_inventory(write(tmp_path, """\
        inventory: lab
        nodes:
          - {name: w, role: host, os: windows}
          - {name: l, role: vm, parent: w, os: linux}
          - {name: t, role: vm, parent: w, os: linux, family: tcp, address: 10.0.0.2}
        """))
    assert [n.family for n in inv.nodes.values()] == ["hyperv", "vsock", "tcp"]
    assert inv.node("w").access.kind == "local"
    assert inv.node("w").access.host_key_policy == "reject"
    assert inv.node("l").source.endswith("inv.yaml:4")


def test_vm_id_is_canonical_lowercase_without_braces(tmp_path):
    inv = load_inventory(write(tmp_path, """\
        inventory: lab
        nodes:
          - {name: h, role: host, os: windows}
          - {name: v, role: vm, parent: h, os: windows, vm_id: "{B50F20E6-CF19-1796-BA60-D9CFE2D8FE29}"}
        """))
    assert inv.node("v").vm_id == "b50f20e6-cf19-1796-ba60-d9cfe2d8fe29"


@pytest.mark.parametrize("cid", [2, 3, 21, 4294967294])
def test_valid_cids(tmp_path, cid):
    inv = load_inventory(write(tmp_path, f"inventory: lab\nnodes:\n  - {{name: h, role: host, os: linux, cid: {cid}}}\n"))
    assert inv.node("h").cid == cid


@pytest.mark.parametrize("cid,word", [(0, "VMADDR_CID_HYPERVISOR"), (1, "VMADDR_CID_LOCAL"),
                                      (4294967295, "VMADDR_CID_ANY"), (-3, "out of range"), ("21", "integer")])
def test_reserved_or_bad_cids_are_rejected(tmp_path, cid, word):
    path = write(tmp_path, f"inventory: lab\nnodes:\n  - {{name: h, role: host, os: linux, cid: {cid!r}}}\n")
    with pytest.raises(InputError, match=word) as err:
        load_inventory(path)
    assert err.value.where == f"{path}:3"


def test_lab_node_on_local_needs_the_environment_override(tmp_path, monkeypatch):
    path = write(tmp_path, "inventory: lab\nnodes:\n  - name: me\n    role: host\n    os: linux\n    lab_node: true\n")
    monkeypatch.delenv(LAB_NODE_ENV, raising=False)
    with pytest.raises(InputError, match="refused unless HVSOCK_MATRIX_LAB_NODE=1") as err:
        load_inventory(path)
    assert err.value.where == f"{path}:6"
    monkeypatch.setenv(LAB_NODE_ENV, "1")
    assert load_inventory(path).node("me").lab_node is True


def test_lab_node_over_ssh_is_fine(tmp_path, monkeypatch):
    monkeypatch.delenv(LAB_NODE_ENV, raising=False)
    inv = load_inventory(write(tmp_path, """\
        inventory: lab
        nodes:
          - {name: g, role: host, os: linux, lab_node: true, access: {kind: ssh, host: g.lab.invalid}}
        """))
    assert inv.node("g").lab_node


@pytest.mark.parametrize("key", ["password", "secret", "token", "passphrase", "Password"])
def test_inline_secrets_are_rejected_anywhere(tmp_path, key):
    path = write(tmp_path, f"inventory: lab\nnodes:\n  - name: h\n    role: host\n    os: linux\n"
                           f"    access:\n      kind: ssh\n      host: h.invalid\n      {key}: x\n")
    with pytest.raises(InputError, match="secrets must not be written inline; use password_env: NAME") as err:
        load_inventory(path)
    assert err.value.where == f"{path}:9"


def test_password_env_must_be_a_variable_name(tmp_path):
    path = write(tmp_path, "inventory: lab\nnodes:\n  - name: h\n    role: host\n    os: windows\n"
                           "    access: {kind: psexec, host: h.invalid, password_env: 'hunter2!'}\n")
    with pytest.raises(InputError, match="NAME of an environment variable"):
        load_inventory(path)


def test_jump_loops_are_rejected(tmp_path):
    path = write(tmp_path, """\
        inventory: lab
        nodes:
          - {name: a, role: host, os: linux, access: {kind: ssh, host: a.invalid, jump: b}}
          - {name: b, role: host, os: linux, access: {kind: ssh, host: b.invalid, jump: a}}
        """)
    with pytest.raises(InputError, match="loop"):
        load_inventory(path)


@pytest.mark.parametrize("access,word", [
    ("{kind: ssh}", "needs host"),
    ("{kind: psexec, host: h.invalid, jump: x}", "jump is only for access kind ssh"),
    ("{kind: ssh, host: h.invalid, netns: ns1}", "netns is only for access kind local"),
    ("{kind: telnet}", "kind: expected"),
    ("{kind: ssh, host: h.invalid, host_key_policy: yolo}", "host_key_policy"),
    ("{kind: ssh, host: h.invalid, port: 0}", "port 0 out of range"),
])
def test_access_rules(tmp_path, access, word):
    path = write(tmp_path, f"inventory: lab\nnodes:\n  - {{name: h, role: host, os: linux, access: {access}}}\n")
    with pytest.raises(InputError, match=word):
        load_inventory(path)


def test_only_a_vm_has_a_parent(tmp_path):
    path = write(tmp_path, """\
        inventory: lab
        nodes:
          - {name: a, role: host, os: linux}
          - {name: b, role: host, os: linux, parent: a}
        """)
    with pytest.raises(InputError, match="only a vm has a parent"):
        load_inventory(path)


def test_scenario_file_is_not_an_inventory(tmp_path):
    with pytest.raises(InputError, match="not an inventory file"):
        load_inventory(ROOT / "scenarios" / "b-linux-vm-on-hyperv.yaml")
