"""VM IDs: the VM's own view (probe facts: Windows registry, Linux KVP pool), the host's Get-VM,
filling the inventory, mismatch lines."""
from __future__ import annotations

import struct

import pytest

from harness.hyperv import vmids
from harness.hyperv.vmids import VmIdViews
from harness.probe import facts as probe_facts
from harness.transports import psexec
from harness.transports.psexec import PsexecTransport
from tests.fakes.fake_psexec import FakePsexecClient
from tests.fakes.fake_windows import (
    FAKE_PASSWORD_ENV,
    FAKE_VM,
    FAKE_VM_ID,
    FakeHyperVLab,
    fake_lab_inventory,
    fake_lab_machines,
)

ID_A = "b50f20e6-cf19-1796-ba60-d9cfe2d8fe29"
ID_B = "f952c5ef-ea6c-4c83-b52c-38f31cf68b61"


def test_parse_get_vm_answers():
    assert vmids.parse_get_vm('{"vms":[{"Name":"Win11-VM","Id":"B50F20E6-CF19-1796-BA60-D9CFE2D8FE29"}]}\r\n') == \
        {"Win11-VM": ID_A}
    assert vmids.parse_get_vm(f'{{"vms":{{"Name":"a","Id":"{ID_B}"}}}}') == {"a": ID_B}  # 5.1 unwrapped one
    assert vmids.parse_get_vm('{"vms":[]}') == {}
    # the script escapes non-ASCII (Out-Ascii): a Korean name survives any console code page
    assert vmids.parse_get_vm(f'{{"vms":[{{"Name":"\\uc708\\ub3c4\\uc6b0","Id":"{ID_A}"}}]}}') == {"윈도우": ID_A}


@pytest.mark.parametrize("text,message", [
    ("Get-VM : access denied", "printed no JSON"),
    ('{"vms":[{"Id":"x"}]}', "without Name"),
    ('{"vms":[{"Name":"a","Id":"nope"}]}', "no usable Id"),
    ('{"error":"The term \'Get-VM\' is not recognized"}', "Get-VM failed: The term"),
])
def test_parse_get_vm_rejects_garbage_with_a_reason(text, message):
    with pytest.raises(ValueError, match=message):
        vmids.parse_get_vm(text)


def test_the_get_vm_script_forces_utf8_and_ascii_output():
    assert "[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false" in vmids.GET_VM_SCRIPT
    assert "Out-Ascii" in vmids.GET_VM_SCRIPT and "catch" in vmids.GET_VM_SCRIPT


def test_mismatch_is_one_line_per_node_naming_every_side():
    inventory = fake_lab_inventory(vm_id=ID_A)
    views = VmIdViews(host={"win-vm": ID_B}, guest={"win-vm": ID_B})
    assert vmids.mismatches(inventory, views) == [
        f"node win-vm: VM ID mismatch: inventory {ID_A}, host {ID_B}, guest {ID_B}"]
    assert vmids.mismatches(inventory, VmIdViews(host={"win-vm": ID_A}, guest={"win-vm": None})) == []


def test_fill_takes_the_vms_own_view_then_the_hosts_and_keeps_given_ids():
    empty = fake_lab_inventory(vm_id=None)
    assert vmids.fill_vm_ids(empty, VmIdViews(host={"win-vm": ID_B}, guest={"win-vm": ID_A})).node("win-vm").vm_id == ID_A
    assert vmids.fill_vm_ids(empty, VmIdViews(host={"win-vm": ID_B})).node("win-vm").vm_id == ID_B
    given = fake_lab_inventory(vm_id=ID_A)
    assert vmids.fill_vm_ids(given, VmIdViews(host={"win-vm": ID_B}, guest={"win-vm": ID_B})).node("win-vm").vm_id == ID_A
    assert empty.node("win-vm").vm_id is None  # the original is untouched


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    FakePsexecClient.created.clear()
    yield FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    psexec.shared_clients().clear()


def test_gather_views_asks_the_host_only_for_vms_that_did_not_answer(lab):
    inventory = fake_lab_inventory(vm_id=None)
    transports = {}

    def transport_for(node):
        return transports.setdefault(node.name, PsexecTransport(node, inventory))

    views, errors = vmids.gather_views(inventory, {"win-vm": {"vm_id": ID_A.upper()}}, transport_for)
    assert (views.guest, views.host, errors, lab.scripts) == ({"win-vm": ID_A}, {}, {}, [])
    views, errors = vmids.gather_views(inventory, {"win-vm": {"vm_id": None}}, transport_for)
    assert errors == {}
    assert views.host == {"win-vm": FAKE_VM_ID}  # matched on hyperv_vm_name "Win11-VM"
    for t in transports.values():
        t.close()


def test_a_host_without_hyperv_is_one_error_line(lab):
    lab.machine("hv-host.fake.invalid").role = "plain"  # no Hyper-V role: Get-VM is not a command
    inventory = fake_lab_inventory(vm_id=None)
    transport = PsexecTransport(inventory.node("hv-host"), inventory)
    views, errors = vmids.gather_views(inventory, {}, lambda node: transport)
    transport.close()
    assert views.host == {} and "Get-VM failed: The term 'Get-VM' is not recognized" in errors["hv-host"]


# -- a Linux VM on Hyper-V: hv_kvp_daemon's pool ---------------------------------------------------------

def kvp_record(key: str, value: str) -> bytes:
    """One struct kvp_record of tools/hv/hv_kvp_daemon.c: key[512], value[2048], NUL-padded."""
    return struct.pack("512s2048s", key.encode(), value.encode())


def test_a_linux_vm_reads_its_vm_id_from_kvp_pool_3(tmp_path):
    pool = tmp_path / ".kvp_pool_3"
    pool.write_bytes(kvp_record("HostName", "HV-HOST") + kvp_record("VirtualMachineId", ID_A.upper())
                     + kvp_record("VirtualMachineName", "Ubuntu-VM"))
    assert probe_facts.kvp_vm_id(str(pool)) == ID_A
    assert probe_facts.kvp_records(str(pool))[2] == ("VirtualMachineName", "Ubuntu-VM")


def test_a_linux_vm_without_the_daemon_or_the_key_has_none(tmp_path):
    assert probe_facts.kvp_vm_id(str(tmp_path / "missing")) is None
    pool = tmp_path / ".kvp_pool_3"
    pool.write_bytes(kvp_record("HostName", "HV-HOST") + b"\0" * 100)  # a record cut short is left out
    assert probe_facts.kvp_vm_id(str(pool)) is None
    pool.write_bytes(kvp_record("VirtualMachineId", "not-a-guid"))
    assert probe_facts.kvp_vm_id(str(pool)) is None


def test_info_reports_the_kvp_vm_id_on_linux(tmp_path, monkeypatch):
    pool = tmp_path / ".kvp_pool_%d"
    (tmp_path / ".kvp_pool_3").write_bytes(kvp_record("VirtualMachineId", ID_B))
    monkeypatch.setattr(probe_facts, "KVP_POOL", str(pool))
    facts = probe_facts.info_facts()
    assert (facts["vm_id"], facts["vm_id_source"]) == (ID_B, "kvp")


def test_the_guest_view_comes_from_the_probe_facts():
    inventory = fake_lab_inventory(vm_id=None)
    facts = {"win-vm": {"vm_id": ID_A.upper(), "vm_id_source": "registry"}, "hv-host": {"vm_id": None}}
    assert vmids.guest_view(inventory, facts) == {"win-vm": ID_A}
    assert vmids.guest_view(inventory, {"win-vm": {"error": "unreachable"}}) == {}


def test_fake_vm_without_integration_services_reports_no_vm_id(lab):
    lab.machine(FAKE_VM).integration_services = False
    from harness.agents import AgentPool

    inventory = fake_lab_inventory()
    with AgentPool(inventory) as pool:
        assert pool.agent("win-vm").info()["vm_id"] is None
