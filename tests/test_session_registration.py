"""Hyper-V registration across xdist workers: workers keep, the controller removes at the end.

Runs against FakeHyperVLab (tests/fakes: Windows cannot exist here); the session code is real.
"""
from __future__ import annotations

import json

import pytest

from harness import session
from harness.cell import Cell
from harness.hyperv import ownership
from harness.hyperv.registration import service_guid
from harness.transports import psexec
from harness.transports.psexec import process as psexec_process
from tests.fakes.fake_psexec import FakePsexecClient
from tests.fakes.fake_windows import FAKE_HOST, FAKE_PASSWORD_ENV, FakeHyperVLab, fake_lab_inventory, fake_lab_machines


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    monkeypatch.setattr(psexec_process, "POLL_START", 0.005)
    FakePsexecClient.created.clear()
    yield FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    psexec.shared_clients().clear()


def _worker_registers(inventory, ports):
    """What one xdist worker's RunSession does: register under the controller's owner tag (workerinput;
    the controller is this process here), keep, hand the GUIDs on (workeroutput)."""
    run = session.RunSession(inventory, keep_registration=True, owner=ownership.owner_tag())
    run.start([Cell("A", "hv-host", "wildcard", "win-vm", "parent", port=p) for p in ports])
    added = run.registrations_added
    run.close()
    return json.loads(json.dumps(added))  # as execnet carries workeroutput: plain data


@pytest.mark.parametrize("keep", [False, True])
def test_controller_removes_what_every_worker_added(lab, keep):
    inventory = fake_lab_inventory()
    collected: dict[str, set[str]] = {}
    for ports in ([19000, 19001], [19001, 19002]):
        for host, guids in _worker_registers(inventory, ports).items():
            collected.setdefault(host, set()).update(guids)
    wanted = {service_guid(p) for p in (19000, 19001, 19002)}
    assert set(lab.machine(FAKE_HOST).gcs) == wanted  # both workers kept theirs during the run

    problems = session.remove_registrations(inventory, collected, keep)

    assert problems == []
    assert set(lab.machine(FAKE_HOST).gcs) == (wanted if keep else set())


def test_failed_registration_turns_cells_e_not_x(tmp_path):
    inventory = fake_lab_inventory()
    run = session.RunSession(inventory)
    run._registration = type("Guard", (), {"errors": {"hv-host": "access denied"}})()
    vm_cell = Cell("A", "win-vm", "wildcard", "hv-host", "server", port=19000)
    assert run._registration_failure(vm_cell) == "service registration failed on hv-host: access denied"
    run._registration.errors = {}
    assert run._registration_failure(vm_cell) is None
