"""VM IDs from the host's Get-VM and the guest's registry; filling the inventory; mismatch lines."""
from __future__ import annotations

import pytest

from harness.hyperv import vmids
from harness.hyperv.vmids import VmIdViews
from harness.transports import psexec
from harness.transports.psexec import PsexecTransport
from tests.fakes.fake_psexec import FakePsexecClient
from tests.fakes.fake_windows import (FAKE_PASSWORD_ENV, FAKE_VM, FAKE_VM_ID, FakeHyperVLab, fake_lab_inventory,
                                      fake_lab_machines)

ID_A = "b50f20e6-cf19-1796-ba60-d9cfe2d8fe29"
ID_B = "f952c5ef-ea6c-4c83-b52c-38f31cf68b61"


def test_parse_get_vm_single_object():
    assert vmids.parse_get_vm('{"Name":"Win11-VM","Id":"B50F20E6-CF19-1796-BA60-D9CFE2D8FE29"}\r\n') == \
        {"Win11-VM": ID_A}


def test_parse_get_vm_list_and_raw_guid_objects():
    text = f'[{{"Name":"a","Id":"{ID_A}"}},{{"Name":"b","Id":{{"Guid":"{ID_B.upper()}"}}}}]'
    assert vmids.parse_get_vm(text) == {"a": ID_A, "b": ID_B}


def test_parse_get_vm_no_vms_prints_nothing():
    assert vmids.parse_get_vm("\r\n") == {}


@pytest.mark.parametrize("text,message", [
    ("Get-VM : access denied", "not JSON"),
    ('[{"Id":"x"}]', "without Name"),
    ('{"Name":"a","Id":"nope"}', "no usable Id"),
])
def test_parse_get_vm_rejects_garbage_with_a_reason(text, message):
    with pytest.raises(ValueError, match=message):
        vmids.parse_get_vm(text)


def test_parse_guest_vm_id():
    assert vmids.parse_guest_vm_id("B50F20E6-CF19-1796-BA60-D9CFE2D8FE29\r\n") == ID_A
    assert vmids.parse_guest_vm_id("none\r\n") is None
    assert vmids.parse_guest_vm_id("") is None


def test_mismatch_is_one_line_per_node():
    inventory = fake_lab_inventory(vm_id=ID_A)
    views = VmIdViews(host={"win-vm": ID_B}, guest={"win-vm": ID_B})
    assert vmids.mismatches(inventory, views) == [
        f"node win-vm: VM ID mismatch: inventory {ID_A}, host {ID_B}, guest {ID_B}"]
    assert vmids.mismatches(inventory, VmIdViews(host={"win-vm": ID_A}, guest={"win-vm": None})) == []


def test_fill_takes_the_host_view_then_the_guest_view_and_keeps_given_ids():
    empty = fake_lab_inventory(vm_id=None)
    assert vmids.fill_vm_ids(empty, VmIdViews(host={"win-vm": ID_B}, guest={"win-vm": ID_A})).node("win-vm").vm_id == ID_B
    assert vmids.fill_vm_ids(empty, VmIdViews(guest={"win-vm": ID_A})).node("win-vm").vm_id == ID_A
    given = fake_lab_inventory(vm_id=ID_A)
    assert vmids.fill_vm_ids(given, VmIdViews(host={"win-vm": ID_B})).node("win-vm").vm_id == ID_A
    assert empty.node("win-vm").vm_id is None  # the original is untouched


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    FakePsexecClient.created.clear()
    yield FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    psexec.shared_clients().clear()


def test_gather_views_from_a_host_and_a_guest(lab):
    inventory = fake_lab_inventory(vm_id=None)
    views, errors = vmids.gather_views(inventory, lambda node: PsexecTransport(node, inventory))
    assert errors == {}
    assert views.host == {"win-vm": FAKE_VM_ID}  # matched on hyperv_vm_name "Win11-VM"
    assert views.guest == {"win-vm": FAKE_VM_ID}
    assert vmids.fill_vm_ids(inventory, views).node("win-vm").vm_id == FAKE_VM_ID


def test_a_guest_without_integration_services_has_no_vm_id(lab):
    lab.machine(FAKE_VM).integration_services = False
    inventory = fake_lab_inventory()
    views, _ = vmids.gather_views(inventory, lambda node: PsexecTransport(node, inventory))
    assert views.guest == {"win-vm": None}
