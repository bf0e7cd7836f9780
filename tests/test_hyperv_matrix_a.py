"""Matrix A end to end, in CI, against FakeHyperVLab (a Windows host and a Windows VM behind fakes).

The real path runs unchanged: scenarios/a-hyperv-wildcards.yaml expanded against an inventory of
two psexec nodes, RegistrationGuard registering the run's service GUIDs on the host, the runner's
probe driver starting `probe.pyz serve` in the background (PAExec asynchronous + SMB read-back) and
`probe.pyz connect` in the foreground, observations classified by harness/runner.py. Only Windows
itself is fake, and its Hyper-V answers restate document 001's matrix A: these tests show that the
harness carries each documented outcome through unchanged (A1..A12 come out as documented when
Windows behaves as documented), not that Windows behaves so.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.agents import AgentPool
from harness.hyperv.registration import RegistrationGuard, guids_for_cells
from harness.matrix import build_report
from harness.outcome import Outcome
from harness.results import Recorder, load_run
from harness.runner import run_cell
from harness.scenario import load_cells
from harness.session import RunSession
from harness.transports import psexec
from harness.transports.psexec import process as psexec_process
from tests.fakes.fake_psexec import FakePsexecClient
from tests.fakes.fake_windows import (
    FAKE_HOST,
    FAKE_PASSWORD_ENV,
    FAKE_VM,
    FAKE_VM_ID,
    FakeHyperVLab,
    fake_lab_inventory,
    fake_lab_machines,
)

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "a-hyperv-wildcards.yaml"
DOCUMENTED = {"A1": "O", "A2": "O", "A3": "O", "A4": "O", "A5": "O", "A6": "O", "A7": "X", "A8": "O",
              "A9": "O", "A10": "O", "A11": "X", "A12": "O"}


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    monkeypatch.setattr(psexec_process, "POLL_START", 0.005)
    FakePsexecClient.created.clear()
    yield FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    psexec.shared_clients().clear()


def documented_cells(inventory):
    return [c for c in load_cells(SCENARIO, inventory) if c.label in DOCUMENTED]


def run_all(cells, inventory, register=True):
    with AgentPool(inventory) as pool:
        if not register:
            return {c.label: run_cell(c, inventory, pool) for c in cells}
        with RegistrationGuard(inventory, agent_for=lambda n: pool.agent(n.name), cells=cells) as guard:
            observations = {c.label: run_cell(c, inventory, pool) for c in cells}
        return observations, guard


def test_documented_cells_come_out_as_document_001_says(lab, tmp_path):
    inventory = fake_lab_inventory()
    cells = documented_cells(inventory)
    assert sorted(c.label for c in cells) == sorted(DOCUMENTED)
    observations, guard = run_all(cells, inventory)
    got = {label: obs.outcome.value for label, obs in observations.items()}
    assert got == DOCUMENTED, {k: observations[k].detail for k in got if got[k] != DOCUMENTED[k]}
    for _label, obs in observations.items():
        if obs.outcome is Outcome.O:
            assert obs.reply == "Hello: World!"
        else:
            assert (obs.errno, obs.errno_name) == (10061, "WSAECONNREFUSED")
    # the run registered exactly its cells' GUIDs on the host, and removed them after
    assert set(guard.added["hv-host"]) == guids_for_cells(cells, inventory)
    assert lab.machine(FAKE_HOST).gcs == {}
    assert lab.listeners == []  # every background server ended (count reached or taskkill)
    assert not any("cleanup" in c.names() for c in FakePsexecClient.created)
    assert len({c.server for c in FakePsexecClient.created}) == len(FakePsexecClient.created) == 2
    # ...and the matrix built from the recorded run shows no cell differing from the document
    recorder = Recorder(tmp_path, {"inventory": inventory.name})
    for c in cells:
        recorder.record(c, observations[c.label])
    report = build_report(load_run(recorder.finish()))
    (matrix,) = report.matrices
    assert len(list(matrix.cells())) == 12 and report.mismatches == []
    assert "hv-host:wildcard" in matrix.rows and "win-vm:parent" in matrix.columns


def test_the_probe_command_lines_a_windows_node_receives(lab):
    inventory = fake_lab_inventory()
    (a1,) = [c for c in documented_cells(inventory) if c.label == "A1"]
    observations, _ = run_all([a1], inventory)
    assert observations["A1"].outcome is Outcome.O
    probe = psexec.DEFAULT_WORKDIR + r"\probe.pyz"
    service = f"{a1.port:08x}-facb-11e6-bd58-64006a7986d3"
    host_cmds = [argv for addr, argv in lab.commands if addr == FAKE_HOST and argv[0] == "py" and "services" not in argv]
    vm_cmds = [argv for addr, argv in lab.commands if addr == FAKE_VM and argv[0] == "py"]
    assert host_cmds == [["py", "-3", probe, "serve", "--family", "hyperv", "--addr",
                          "00000000-0000-0000-0000-000000000000", "--port", str(a1.port), "--service", service,
                          "--count", "1", "--timeout", "50", "--stop-file", psexec.DEFAULT_WORKDIR + r"\stop-P1"]]
    assert vm_cmds == [["py", "-3", probe, "connect", "--family", "hyperv", "--addr",
                        "a42e7cda-d03f-480c-9cc2-a4de20abb878", "--port", str(a1.port), "--service", service,
                        "--payload-hex", b"World!".hex(), "--timeout", "10", "--connect-timeout", "10"]]
    # the probe was copied over SMB to both machines before it ran (the fake lab runs no missing probe.py:
    # FakeHyperVLab._probe_args), and the run's folder went from both when the pool closed
    for addr in (FAKE_HOST, FAKE_VM):
        assert psexec.admin_share_path(addr, psexec.DEFAULT_WORKDIR) in lab.share.removed_trees
    assert lab.share.files == {}


def test_without_registration_the_vm_cannot_reach_the_host(lab):
    inventory = fake_lab_inventory()
    cells = [c for c in documented_cells(inventory) if c.label in ("A1", "A2")]
    observations = run_all(cells, inventory, register=False)
    assert observations["A1"].outcome is Outcome.X  # crosses the VM boundary: needs the GUID registered
    assert observations["A2"].outcome is Outcome.O  # host loopback: no registration involved


def run_session(cells, inventory):
    """A whole run as pytest makes it: RunSession.start (probes, VM IDs, registration), each cell, close."""
    run = RunSession(inventory)
    try:
        run.start(cells)
        return {c.label: run.run(c) for c in cells}, run
    finally:
        run.close()


@pytest.mark.parametrize("label", ["A3", "A7", "A11"])
def test_a_vm_without_vm_id_in_the_inventory_gets_it_from_the_vm_itself(lab, label):
    """Issue 18 defect 2: fill_vm_ids was never called by a run, so host -> VM cells were n/a without an
    inventory vm_id. The session now reads the VM's own VirtualMachineId from its probe's facts."""
    inventory = fake_lab_inventory(vm_id=None)
    cells = [c for c in documented_cells(inventory) if c.label == label]
    observations, run = run_session(cells, inventory)
    assert observations[label].outcome.value == DOCUMENTED[label], observations[label].detail
    assert run.inventory.node("win-vm").vm_id == FAKE_VM_ID
    assert not any("Get-VM" in script for _, script in lab.scripts)  # the VM answered: no host script needed


def test_without_integration_services_the_host_gives_the_vm_id(lab):
    lab.machine(FAKE_VM).integration_services = False  # no VirtualMachineId in the VM's registry
    inventory = fake_lab_inventory(vm_id=None)
    (a3,) = [c for c in documented_cells(inventory) if c.label == "A3"]
    observations, run = run_session([a3], inventory)
    assert observations["A3"].outcome is Outcome.O
    assert run.inventory.node("win-vm").vm_id == FAKE_VM_ID
    assert [addr for addr, script in lab.scripts if "Get-VM" in script] == [FAKE_HOST]


def test_a_vm_id_from_a_host_with_a_korean_vm_name(lab):
    """Issue 18 defect 9: PowerShell wrote Get-VM's answer in the console's OEM code page (949 on the
    documents' Korean Windows) and the controller read it as UTF-8, so a Korean VM name never matched."""
    lab.machine(FAKE_VM).integration_services = False
    lab.machine(FAKE_VM).vm_name = "윈도우-가상머신"
    lab.machine(FAKE_HOST).oem_codepage = "cp949"
    base = fake_lab_inventory(vm_id=None)
    vm = dataclasses.replace(base.node("win-vm"), facts={"hyperv_vm_name": "윈도우-가상머신"})
    inventory = dataclasses.replace(base, nodes={**base.nodes, "win-vm": vm})
    (a3,) = [c for c in documented_cells(inventory) if c.label == "A3"]
    observations, run = run_session([a3], inventory)
    assert run.inventory.node("win-vm").vm_id == FAKE_VM_ID
    assert observations["A3"].outcome is Outcome.O


def test_when_no_source_knows_the_vm_id_host_to_vm_cells_are_not_applicable(lab):
    lab.machine(FAKE_VM).integration_services = False
    lab.machine(FAKE_VM).vm_name = "some-other-name"  # the host's Get-VM has no VM of the node's name
    inventory = fake_lab_inventory(vm_id=None)
    (a3,) = [c for c in documented_cells(inventory) if c.label == "A3"]
    observations, _ = run_session([a3], inventory)
    assert observations["A3"].outcome is Outcome.NA
    assert "vm_id" in observations["A3"].detail or "VM ID" in observations["A3"].detail


def test_every_cell_of_matrix_a_gets_a_real_outcome(lab):
    inventory = fake_lab_inventory()
    cells = load_cells(SCENARIO, inventory)
    observations, _ = run_all(cells, inventory)
    outcomes = {obs.outcome for obs in observations.values()}
    errors = {label: obs.detail for label, obs in observations.items() if obs.outcome is Outcome.E}
    assert errors == {}
    assert Outcome.O in outcomes and Outcome.X in outcomes
    assert lab.listeners == [] and lab.machine(FAKE_HOST).gcs == {}
    # nothing left in the nodes' run folders once the pool closed: spawn files, probes, the folders themselves
    assert lab.share.files == {}
    assert sorted(lab.share.removed_trees) == sorted(psexec.admin_share_path(a, psexec.DEFAULT_WORKDIR)
                                                     for a in (FAKE_HOST, FAKE_VM))


def test_a_registration_script_is_sent_once_per_run_not_per_cell(lab):
    inventory = fake_lab_inventory()
    cells = documented_cells(inventory)
    run_all(cells, inventory)
    kinds = [argv[argv.index("services") + 1] for addr, argv in lab.commands if addr == FAKE_HOST and "services" in argv]
    assert kinds == ["list", "register", "unregister"]  # list: a killed run's leftovers are swept first
    assert not any("GuestCommunicationServices" in script for _, script in lab.scripts)  # no PowerShell for it


def test_a_windows_node_on_python_311_reads_e_never_x(lab):
    """CPython < 3.12 has no AF_HYPERV: the probe refuses, so the VM's cells are E (with the fix), not X."""
    lab.machine(FAKE_VM).python = "3.11.9"
    inventory = fake_lab_inventory()
    cells = documented_cells(inventory)
    observations, _ = run_all(cells, inventory)
    by_label = {c.label: c for c in cells}
    on_vm = {label: obs for label, obs in observations.items()
             if "win-vm" in (by_label[label].server_on, by_label[label].client_on)}
    assert on_vm
    assert {obs.outcome for obs in on_vm.values()} == {Outcome.E}
    assert all("3.12" in obs.detail for obs in on_vm.values()), {k: o.detail for k, o in on_vm.items()}
