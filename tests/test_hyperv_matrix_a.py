"""Matrix A end to end, in CI, against FakeHyperVLab (a Windows host and a Windows VM behind fakes).

The real path runs unchanged: scenarios/a-hyperv-wildcards.yaml expanded against an inventory of
two psexec nodes, RegistrationGuard registering the run's service GUIDs on the host, the runner's
probe driver starting `probe.pyz serve` in the background (PAExec asynchronous + SMB read-back) and
`probe.pyz connect` in the foreground, observations classified by harness/runner.py. Only Windows
itself is fake; it answers as document 001 says, so A1..A12 must come out as documented.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.agents import AgentPool
from harness.hyperv.powershell import decode_command
from harness.hyperv.registration import RegistrationGuard, guids_for_cells
from harness.matrix import build_report
from harness.outcome import Outcome
from harness.results import Recorder, load_run
from harness.runner import run_cell
from harness.scenario import load_cells
from harness.transports import psexec
from harness.transports.psexec import process as psexec_process
from tests.fakes.fake_psexec import FakePsexecClient
from tests.fakes.fake_windows import (FAKE_HOST, FAKE_PASSWORD_ENV, FAKE_VM, FAKE_VM_ID, FakeHyperVLab,
                                      fake_lab_inventory, fake_lab_machines)

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
        with RegistrationGuard(inventory, cells=cells, transport_for=lambda n: pool.transport(n.name)) as guard:
            observations = {c.label: run_cell(c, inventory, pool) for c in cells}
        return observations, guard


def test_documented_cells_come_out_as_document_001_says(lab, tmp_path):
    inventory = fake_lab_inventory()
    cells = documented_cells(inventory)
    assert sorted(c.label for c in cells) == sorted(DOCUMENTED)
    observations, guard = run_all(cells, inventory)
    got = {label: obs.outcome.value for label, obs in observations.items()}
    assert got == DOCUMENTED, {k: observations[k].detail for k in got if got[k] != DOCUMENTED[k]}
    for label, obs in observations.items():
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
    host_cmds = [argv for addr, argv in lab.commands if addr == FAKE_HOST and argv[0] == "py"]
    vm_cmds = [argv for addr, argv in lab.commands if addr == FAKE_VM and argv[0] == "py"]
    assert host_cmds == [["py", "-3", probe, "serve", "--family", "hyperv", "--addr",
                          "00000000-0000-0000-0000-000000000000", "--port", str(a1.port), "--service", service,
                          "--count", "1", "--timeout", "50"]]
    assert vm_cmds == [["py", "-3", probe, "connect", "--family", "hyperv", "--addr",
                        "a42e7cda-d03f-480c-9cc2-a4de20abb878", "--port", str(a1.port), "--service", service,
                        "--payload", "World!", "--timeout", "10", "--connect-timeout", "10"]]
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


def test_a_vm_without_vm_id_makes_host_to_vm_cells_not_applicable(lab):
    inventory = fake_lab_inventory(vm_id=None)
    (a3,) = [c for c in documented_cells(inventory) if c.label == "A3"]
    observations, _ = run_all([a3], inventory)
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
    kinds = [("register" if "'added '" in s else "unregister" if "'removed '" in s
              else "list" if "Get-ChildItem -LiteralPath $root" in s else "other")
             for addr, s in lab.scripts if addr == FAKE_HOST and "GuestCommunicationServices" in s]
    assert kinds == ["list", "register", "unregister"]  # list: a killed run's leftovers are swept first


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
