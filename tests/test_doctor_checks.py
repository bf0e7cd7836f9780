"""Doctor checks against sample facts: every row's state and fix, no lab needed."""
from __future__ import annotations

import socket

import pytest
from rich.console import Console

from harness.doctor import checks
from harness.doctor import facts as doctor_facts
from harness.doctor.checks import FAIL, OK, SKIP, WARN
from harness.doctor.parse import parse_proc_modules, parse_version
from harness.doctor.table import render
from tests.fakes.fake_windows import fake_lab_inventory

G19000 = "00004a38-facb-11e6-bd58-64006a7986d3"
G19001 = "00004a39-facb-11e6-bd58-64006a7986d3"

KVM_GUEST = {"python": "3.11.2", "vsock_modules": ["vmw_vsock_virtio_transport", "vmw_vsock_virtio_transport_common",
                                                   "vsock", "vsock_loopback"],
             "dev_vsock": True, "local_cid": 21, "socat_version": "1.7.4.4", "lab_node": True}


def by_what(rows):
    return {r.what: r for r in rows}


def test_a_healthy_kvm_guest():
    rows = by_what(checks.linux_checks(KVM_GUEST, "vm", "linux", inventory_cid=21, lab_node=True, needs_socat=True))
    assert {k: r.state for k, r in rows.items()} == {
        "Python for the probe": OK, "module vsock": OK, "module vsock_loopback": OK,
        "module vmw_vsock_virtio_transport": OK, "module hv_sock": SKIP, "/dev/vsock": OK,
        "local CID": OK, "socat >= 1.7.4": OK}
    assert rows["local CID"].detail == "21"


def test_a_kvm_guest_without_a_cid_is_told_how_to_start_qemu():
    row = by_what(checks.linux_checks(dict(KVM_GUEST, local_cid=4294967295), "vm", "linux", lab_node=True))["local CID"]
    assert (row.state, row.detail) == (FAIL, "4294967295 (none assigned)")
    assert "guest-cid=N" in row.fix


def test_inventory_cid_disagreeing_with_the_node():
    row = by_what(checks.linux_checks(KVM_GUEST, "vm", "linux", inventory_cid=22, lab_node=True))["local CID"]
    assert (row.state, row.fix) == (FAIL, "set cid: 21 in the inventory")


def test_a_linux_vm_on_hyperv_needs_hv_sock_and_has_no_cid():
    facts = {"python": "3.10.12", "vsock_modules": ["vsock"], "dev_vsock": True, "local_cid": 4294967295,
             "socat_version": "1.7.4.1"}
    rows = by_what(checks.linux_checks(facts, "vm", "windows", lab_node=True))
    assert rows["module hv_sock"].state == FAIL and rows["module hv_sock"].fix.startswith("modprobe hv_sock")
    assert rows["module vmw_vsock_virtio_transport"].state == SKIP
    assert rows["local CID"].state == OK and "Hyper-V" in rows["local CID"].detail
    assert rows["module vsock_loopback"].state == FAIL and "modprobe vsock_loopback" in rows["module vsock_loopback"].fix


def test_a_kvm_host_with_guests_needs_vhost_vsock():
    facts = dict(KVM_GUEST, vsock_modules=["vsock", "vsock_loopback"], local_cid=4294967295)
    rows = by_what(checks.linux_checks(facts, "host", None, has_linux_children=True, lab_node=True))
    assert rows["module vhost_vsock"].state == FAIL
    assert rows["local CID"].state == OK


def test_no_dev_vsock():
    facts = {"python": "3.11.2", "vsock_modules": [], "dev_vsock": False, "local_cid": None}
    rows = by_what(checks.linux_checks(facts, "host", None, lab_node=True))
    assert rows["/dev/vsock"].state == FAIL and rows["module vsock"].state == FAIL
    assert rows["local CID"].state == SKIP


@pytest.mark.parametrize("version,needed,state", [
    ("1.7.3.3", False, WARN), ("1.7.3.3", True, FAIL), (None, False, WARN), ("1.8.0.0", True, OK)])
def test_socat_version(version, needed, state):
    row = by_what(checks.linux_checks(dict(KVM_GUEST, socat_version=version), "vm", "linux",
                                      lab_node=True, needs_socat=needed))["socat >= 1.7.4"]
    assert row.state == state
    if state != OK:
        assert "1.7.4" in row.fix


def test_the_controller_is_never_read_for_a_cid():
    facts = {"python": "3.11.7", "vsock_modules": ["vsock"], "dev_vsock": True, "local_cid": None,
             "refused": ["/dev/vsock ioctl: not a lab node"]}
    row = by_what(checks.linux_checks(facts, "host", None, lab_node=False))["local CID"]
    assert row.state == SKIP and "not a lab node" in row.detail


@pytest.mark.parametrize("version,state", [("3.8.0", OK), ("3.7.9", FAIL), (None, FAIL), ("Python 3.12.1", OK)])
def test_python_version(version, state):
    assert checks.python_check(version, "linux").state == state


WINDOWS_VM = {"python": "3.12.1", "vm_id": "B50F20E6-CF19-1796-BA60-D9CFE2D8FE29", "af_hyperv": True}
WINDOWS_HOST = {"python": "3.12.1", "vm_id": None, "gcs_root": True, "registered": [G19000.upper()],
                "af_hyperv": True}


def test_a_healthy_windows_vm():
    rows = by_what(checks.windows_checks(WINDOWS_VM, "vm", "b50f20e6-cf19-1796-ba60-d9cfe2d8fe29"))
    assert {k: r.state for k, r in rows.items()} == {
        "Python for the probe": OK, 'Winsock provider "Hyper-V RAW"': OK, "integration services (VirtualMachineId)": OK}
    assert "socket(AF_HYPERV" in rows['Winsock provider "Hyper-V RAW"'].detail


def test_a_windows_vm_without_integration_services():
    row = by_what(checks.windows_checks(dict(WINDOWS_VM, vm_id=None), "vm"))["integration services (VirtualMachineId)"]
    assert row.state == FAIL and "Enable-VMIntegrationService" in row.fix


def test_a_windows_vm_whose_id_disagrees_with_the_inventory():
    row = by_what(checks.windows_checks(WINDOWS_VM, "vm", "f952c5ef-ea6c-4c83-b52c-38f31cf68b61"))[
        "integration services (VirtualMachineId)"]
    assert row.state == FAIL and row.fix.startswith("set vm_id: b50f20e6-cf19-1796-ba60-d9cfe2d8fe29")


def test_a_windows_node_without_the_hyperv_raw_provider():
    """The probe's af_hyperv fact is Winsock's answer (socket() fails), whatever language netsh speaks."""
    row = by_what(checks.windows_checks(dict(WINDOWS_VM, af_hyperv=False), "vm"))['Winsock provider "Hyper-V RAW"']
    assert row.state == FAIL


def test_host_registrations_against_a_run():
    rows = by_what(checks.windows_checks(WINDOWS_HOST, "host", run_guids={G19000, G19001}))
    assert rows["Hyper-V role"].state == OK
    reg = rows["service GUIDs registered"]
    assert (reg.state, reg.detail) == (WARN, f"1 of 2 missing, e.g. {G19001}")
    assert "hvsock-matrix register" in reg.fix
    assert by_what(checks.windows_checks(WINDOWS_HOST, "host", run_guids={G19000}))["service GUIDs registered"].state == OK
    assert by_what(checks.windows_checks(WINDOWS_HOST, "host"))["service GUIDs registered"].state == SKIP


def test_host_without_hyperv():
    rows = by_what(checks.windows_checks(dict(WINDOWS_HOST, gcs_root=False), "host", run_guids={G19000}))
    assert rows["Hyper-V role"].state == FAIL and "Microsoft-Hyper-V" in rows["Hyper-V role"].fix
    assert "service GUIDs registered" not in rows


def test_parse_versions_and_modules():
    assert parse_version("socat version 1.7.4.4 on 06 Nov 2022 08:15:51") == (1, 7, 4, 4)
    assert parse_version("Python 3.12.1\r\n") == (3, 12, 1)
    assert parse_version("no digits") is None
    lsmod = "Module                  Size  Used by\nvsock_loopback         12288  0\nvsock 57344  1 vsock_loopback\n"
    assert parse_proc_modules(lsmod) == ["vsock_loopback", "vsock"]
    proc = "vsock_loopback 12288 0 - Live 0x0000000000000000\n"
    assert parse_proc_modules(proc) == ["vsock_loopback"]


def test_controller_facts_never_open_a_vsock_socket(monkeypatch):
    real_socket = socket.socket

    def guarded(family=-1, *a, **kw):
        assert family != getattr(socket, "AF_VSOCK", 40), "AF_VSOCK opened on the controller"
        return real_socket(family, *a, **kw)
    monkeypatch.setattr(socket, "socket", guarded)
    facts = doctor_facts.controller_facts()
    assert facts["local_cid"] is None and facts["refused"]
    try:
        with open("/proc/modules") as f:
            names = {line.split()[0] for line in f}
    except FileNotFoundError:  # containers without /proc/modules: nothing listed, nothing invented
        names = set()
    assert set(facts["vsock_modules"]) <= names
    assert all("vsock" in n or n in ("hv_sock", "vmw_vmci") for n in facts["vsock_modules"])


def test_render_prints_one_table_per_node_and_fails_on_fail():
    inventory = fake_lab_inventory()
    results = {"hv-host": checks.windows_checks(WINDOWS_HOST, "host", run_guids={G19000}),
               "win-vm": checks.windows_checks(dict(WINDOWS_VM, vm_id=None), "vm")}
    console = Console(record=True, width=250, color_system=None)
    assert render(inventory, results, console) == 1
    text = console.export_text()
    assert "hv-host  (windows host, psexec)" in text and "win-vm  (windows vm, psexec)" in text
    assert "Enable-VMIntegrationService" in text
    assert "doctor: 2 node(s), 1 failing check(s), 0 warning(s)" in text
    ok_only = {"hv-host": checks.windows_checks(WINDOWS_HOST, "host", run_guids={G19000})}
    assert render(inventory, ok_only, Console(record=True, width=250)) == 0


@pytest.mark.parametrize("version,state", [("3.11.9", checks.FAIL), ("3.8.10", checks.FAIL), ("3.12.0", checks.OK),
                                           ("3.13.1", checks.OK)])
def test_windows_python_floor_is_312(version, state):
    """Before 3.12 CPython has no AF_HYPERV: a Windows server could never accept (the probe refuses)."""
    row = checks.windows_checks({**WINDOWS_VM, "python": version}, "vm")[0]
    assert (row.what, row.state) == ("Python for the probe", state)
    if state == checks.FAIL:
        assert "3.12" in row.fix
