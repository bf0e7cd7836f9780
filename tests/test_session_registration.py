"""Hyper-V registration across xdist workers: workers keep, the controller removes at the end.

Runs against FakeHyperVLab (tests/fakes: Windows cannot exist here); the session code is real.
"""
from __future__ import annotations

import json

import pytest

from harness import plugin, session
from harness.agents import AgentPool
from harness.cell import Cell
from harness.hyperv.registration import RegistrationGuard, service_guid
from harness.transports import psexec
from tests.fakes.fake_psexec import FakePsexecClient
from tests.fakes.fake_windows import FAKE_HOST, FAKE_PASSWORD_ENV, FakeHyperVLab, fake_lab_inventory, fake_lab_machines


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    monkeypatch.setattr(psexec, "POLL_START", 0.005)
    FakePsexecClient.created.clear()
    yield FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    psexec.shared_clients().clear()


class FakeConfig:
    """Just the two things remove_worker_registrations reads from a pytest config."""

    def __init__(self, keep):
        self.keep = keep

    def getoption(self, name, default=None):
        return self.keep if name == "keep_registration" else default


def _worker_registers(inventory, ports, tmp_path, worker):
    cells = [Cell("A", "hv-host", "wildcard", "win-vm", "parent", port=p) for p in ports]
    with AgentPool(inventory) as pool:
        with RegistrationGuard(inventory, cells=cells, keep=True,
                               transport_for=lambda n: pool.transport(n.name)) as guard:
            pass
    note = tmp_path / "registration" / f"{worker}.json"
    note.parent.mkdir(exist_ok=True)
    note.write_text(json.dumps(guard.added))
    return guard


@pytest.mark.parametrize("keep", [False, True])
def test_controller_removes_what_every_worker_added(lab, tmp_path, monkeypatch, keep):
    inventory = fake_lab_inventory()
    monkeypatch.setattr(plugin, "get_inventory", lambda config: inventory)
    _worker_registers(inventory, [19000, 19001], tmp_path, "gw0")
    _worker_registers(inventory, [19001, 19002], tmp_path, "gw1")
    wanted = {service_guid(p) for p in (19000, 19001, 19002)}
    assert set(lab.machine(FAKE_HOST).gcs) == wanted  # both workers kept theirs during the run

    problems = session.remove_worker_registrations(FakeConfig(keep), tmp_path)

    assert problems == []
    assert set(lab.machine(FAKE_HOST).gcs) == (wanted if keep else set())


def test_failed_registration_turns_cells_e_not_x(tmp_path):
    inventory = fake_lab_inventory()
    run = session.RunSession.__new__(session.RunSession)
    run._inventory = inventory
    run._registration_error = None
    run._registration = type("Guard", (), {"errors": {"hv-host": "access denied"}})()
    vm_cell = Cell("A", "win-vm", "wildcard", "hv-host", "server", port=19000)
    assert run._registration_failure(vm_cell) == "service registration failed on hv-host: access denied"
    run._registration.errors = {}
    assert run._registration_failure(vm_cell) is None
