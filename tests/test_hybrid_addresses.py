"""Hybrid vsock tokens, on the inventory `lab up --hybrid 2` writes: the guest side resolves as vsock,
the host side (l1-hybrid, family hybrid) as the guests' Unix sockets (harness/hybrid_addresses.py)."""
from __future__ import annotations

import pytest

from harness import addresses
from harness.inventory import load_inventory
from harness.lab import inventory_file
from harness.lab.backend import uds_path
from harness.lab.paths import LabPaths

UDS31, UDS32 = uds_path("vm31"), uds_path("vm32")


@pytest.fixture(scope="module")
def inv(tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / "inventory.yaml"
    path.write_text(inventory_file.inventory_text(LabPaths(tmp_path_factory.mktemp("cache")), 2232, 2,
                                                  hybrid=2, backend_version="vhost-device-vsock 0.3.0"))
    return load_inventory(path)


def test_the_lab_inventory_has_a_hybrid_host_and_its_guests(inv):
    host, vm31, vm32 = inv.node("l1-hybrid"), inv.node("vm31"), inv.node("vm32")
    assert host.family == "hybrid" and host.role == "host" and host.lab_node
    assert (vm31.parent, vm31.family, vm31.cid, vm31.hybrid_uds) == ("l1-hybrid", "vsock", 31, UDS31)
    assert vm32.hybrid_uds == UDS32 and inv.node("vm21").hybrid_uds is None  # kernel guests have none
    assert inv.node("vm21").parent == "l1"


@pytest.mark.parametrize("token, addr", [
    ("any", f"{UDS31},{UDS32}"), ("host", f"{UDS31},{UDS32}"), ("self", f"{UDS31},{UDS32}"),
    ("node:vm32", UDS32), ("31", UDS31)])
def test_host_binds_listen_on_the_guests_sockets(inv, token, addr):
    res = addresses.resolve_bind(token, inv.node("l1-hybrid"), inv)
    assert (res.family, res.addr) == ("hybrid", addr)


@pytest.mark.parametrize("token, why", [
    ("local", "no loopback"), ("children", "HV_GUID_CHILDREN"), ("node:vm21", "vm21 has no hybrid_uds"),
    ("21", "no hybrid guest with CID 21"), ("node:nosuch", "no node nosuch")])
def test_host_binds_without_meaning_are_na(inv, token, why):
    res = addresses.resolve_bind(token, inv.node("l1-hybrid"), inv)
    assert res.is_na and why in res.na_reason


def test_host_connects_through_the_servers_socket(inv):
    host = inv.node("l1-hybrid")
    assert addresses.resolve_target("server", host, inv.node("vm31"), inv).addr == UDS31
    assert addresses.resolve_target("node:vm32", host, inv.node("vm31"), inv).addr == UDS32
    for token in ("loopback", "parent", "self", "any"):
        assert addresses.resolve_target(token, host, inv.node("vm31"), inv).is_na
    assert addresses.resolve_target("server", host, inv.node("vm21"), inv).is_na  # a kernel guest: no UDS


def test_the_guest_side_is_plain_vsock(inv):
    vm31 = inv.node("vm31")
    assert addresses.resolve_target("parent", vm31, inv.node("l1-hybrid"), inv).addr == "2"
    assert addresses.resolve_target("server", vm31, inv.node("l1-hybrid"), inv).addr == "2"
    assert addresses.resolve_target("server", vm31, inv.node("vm32"), inv).addr == "32"
    assert addresses.resolve_bind("any", vm31, inv).addr == str(addresses.VMADDR_CID_ANY)


def test_a_hybrid_uds_must_be_an_absolute_short_path(tmp_path):
    from harness.errors import InputError
    bad = tmp_path / "bad.yaml"
    bad.write_text("inventory: x\nnodes:\n  - {name: h, role: host, os: linux, family: hybrid}\n"
                   "  - {name: g, role: vm, parent: h, os: linux, cid: 3, hybrid_uds: relative/path}\n")
    with pytest.raises(InputError, match=r"bad.yaml:4: .*hybrid_uds must be an absolute path"):
        load_inventory(bad)
