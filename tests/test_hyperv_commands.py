"""`hvsock-matrix register / unregister / doctor` end to end against FakeHyperVLab, through the CLI."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.hyperv import ownership
from harness.hyperv.registration import service_guid
from harness.transports import psexec
from tests.fakes.fake_psexec import FakePsexecClient
from tests.fakes.fake_windows import FAKE_HOST, FAKE_PASSWORD_ENV, FAKE_VM, FAKE_VM_ID, FakeHyperVLab, fake_lab_machines

SCENARIO_A = Path(__file__).resolve().parent.parent / "scenarios" / "a-hyperv-wildcards.yaml"

INVENTORY = f"""\
inventory: fake-hyperv
nodes:
  - name: hv-host
    role: host
    os: windows
    access: {{kind: psexec, host: {FAKE_HOST}, user: 'LAB\\Administrator', password_env: {FAKE_PASSWORD_ENV}}}
  - name: win-vm
    role: vm
    parent: hv-host
    os: windows
    VMID
    facts: {{hyperv_vm_name: Win11-VM}}
    access: {{kind: psexec, host: {FAKE_VM}, user: Administrator, password_env: {FAKE_PASSWORD_ENV}}}
  - name: controller
    role: host
    os: linux
    access: {{kind: local}}
"""


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    FakePsexecClient.created.clear()
    yield FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    psexec.shared_clients().clear()


def inventory_file(tmp_path, vm_id=FAKE_VM_ID) -> str:
    path = tmp_path / "fake-hyperv.yaml"
    path.write_text(INVENTORY.replace("VMID", f"vm_id: {vm_id}" if vm_id else ""))
    return str(path)


def test_register_then_unregister_a_port_range(lab, tmp_path, capsys):
    inv = inventory_file(tmp_path)
    assert cli.main(["register", "--inventory", inv, "--ports", "19000-19004"]) == 0
    assert capsys.readouterr().out == "hv-host: 5 added, 0 already registered\n"
    assert sorted(lab.machine(FAKE_HOST).gcs) == sorted(service_guid(p) for p in range(19000, 19005))
    assert cli.main(["register", "--inventory", inv, "--ports", "19003-19005"]) == 0
    assert capsys.readouterr().out == "hv-host: 1 added, 2 already registered\n"
    host = lab.machine(FAKE_HOST)
    host.gcs["9866c7bc-0c89-4cb0-9427-5b526d1ae83b"] = "MyGcs"
    live = service_guid(19500)
    host.gcs[live], host.gcs_owner[live] = "hvsock-matrix", ownership.owner_tag()  # a run still going
    untagged = service_guid(19600)
    host.gcs[untagged] = "hvsock-matrix"  # no owner tag: not provably ours
    assert cli.main(["unregister", "--inventory", inv]) == 0  # what `register` made here, and dead runs'
    assert capsys.readouterr().out == ("hv-host: 6 removed, 3 kept (a live run's, another user's or controller's, "
                                       "untagged, or not registered by hvsock-matrix)\n")
    assert set(host.gcs) == {"9866c7bc-0c89-4cb0-9427-5b526d1ae83b", live, untagged}
    assert not any("cleanup" in c.names() for c in FakePsexecClient.created)


def test_register_a_scenarios_guids(lab, tmp_path, capsys):
    inv = inventory_file(tmp_path)
    assert cli.main(["register", "--inventory", inv, "--scenario", str(SCENARIO_A)]) == 0
    added = int(capsys.readouterr().out.split(":")[1].split()[0])
    assert added == len(lab.machine(FAKE_HOST).gcs) > 12
    assert cli.main(["unregister", "--inventory", inv, "--scenario", str(SCENARIO_A)]) == 0
    assert lab.machine(FAKE_HOST).gcs == {}


def test_bad_port_range_is_one_line(lab, tmp_path, capsys):
    assert cli.main(["register", "--inventory", inventory_file(tmp_path), "--ports", "5-1"]) == 2
    assert capsys.readouterr().err == "hvsock-matrix: --ports: bad port range '5-1' (1 <= A <= B <= 4294967294)\n"


def test_register_with_the_password_variable_unset_names_node_and_variable(lab, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(FAKE_PASSWORD_ENV)
    assert cli.main(["register", "--inventory", inventory_file(tmp_path), "--ports", "19000"]) == 1
    err = capsys.readouterr().err
    assert err == (f"hvsock-matrix: node hv-host: environment variable {FAKE_PASSWORD_ENV} is not set "
                   f"(the psexec password for LAB\\Administrator@{FAKE_HOST})\n")


def test_doctor_over_the_fake_lab(lab, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    lab.machine(FAKE_HOST).gcs[service_guid(20000)] = "hvsock-matrix"
    inv = inventory_file(tmp_path)
    rc = cli.main(["doctor", "--inventory", inv, "--ports", "20000-20001", "--node", "hv-host", "--node", "win-vm"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "hv-host  (windows host, psexec)" in out and "win-vm  (windows vm, psexec)" in out
    assert "1 of 2 missing" in out
    assert "socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW) works" in out and FAKE_VM_ID in out
    assert "doctor: 2 node(s), 0 failing check(s), 1 warning(s)" in out


def test_doctor_finds_a_vm_id_mismatch_and_missing_integration_services(lab, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    lab.machine(FAKE_VM).integration_services = False
    inv = inventory_file(tmp_path, vm_id="f952c5ef-ea6c-4c83-b52c-38f31cf68b61")
    assert cli.main(["doctor", "--inventory", inv, "--node", "win-vm", "--node", "hv-host"]) == 1
    out = capsys.readouterr().out
    assert "Enable-VMIntegrationService" in out
    assert f"set vm_id: {FAKE_VM_ID} in the inventory" in out  # the host's Get-VM view


def test_doctor_reads_the_controller_without_the_probe(lab, tmp_path, capsys, monkeypatch):
    import harness.agents

    def no_agent(self, name):
        raise AssertionError(f"agent asked for {name}")
    monkeypatch.setattr(harness.agents.AgentPool, "agent", no_agent)
    monkeypatch.setenv("COLUMNS", "250")
    cli.main(["doctor", "--inventory", inventory_file(tmp_path), "--node", "controller"])
    out = capsys.readouterr().out
    assert "controller  (linux host, local)" in out
    assert "not a lab node" in out
