"""After a killed run, the next normal run leaves a Windows host as it was before the killed run.

GUID registrations carry their run's owner tag (`<controller host>:<pid>:<start ticks>`); PAExec
services and exes carry pypsexec's `PAExec-<pid>-<controller host>`. Only a run of this controller
host whose process is gone is swept; live runs, other controllers and untagged entries stay.
Dead and live controller processes are real child processes of this test.
"""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from harness.agents import AgentPool
from harness.hyperv import ownership, registration
from harness.transports import psexec
from harness.transports.psexec import PsexecTransport
from harness.transports.psexec import clients as psexec_clients
from tests.fakes.fake_psexec import FakePsexecClient, FakeServiceManager
from tests.fakes.fake_windows import (
    FAKE_HOST,
    FAKE_PASSWORD_ENV,
    FakeHyperVLab,
    fake_lab_inventory,
    fake_lab_machines,
)

G_KILLED = [f"{p:08x}{registration.VSOCK_TEMPLATE_SUFFIX}" for p in (19000, 19001)]
G_LIVE = f"{19500:08x}{registration.VSOCK_TEMPLATE_SUFFIX}"
G_OTHER_HOST = f"{19600:08x}{registration.VSOCK_TEMPLATE_SUFFIX}"
G_UNTAGGED = f"{19700:08x}{registration.VSOCK_TEMPLATE_SUFFIX}"
G_MANUAL = f"{19800:08x}{registration.VSOCK_TEMPLATE_SUFFIX}"
G_FOREIGN = "9866c7bc-0c89-4cb0-9427-5b526d1ae83b"  # someone else's, ElementName not ours


@pytest.fixture
def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    tag = ownership.owner_tag(child.pid)  # taken while it runs, as the killed run wrote it
    child.wait(60)
    return child.pid, tag


@pytest.fixture
def live_pid():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield child.pid, ownership.owner_tag(child.pid)
    child.stdin.close()
    child.wait(60)


@pytest.fixture
def lab(monkeypatch):
    FakePsexecClient.created.clear()
    FakeServiceManager.machines.clear()
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "pw")
    lab = FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    yield lab
    psexec.shared_clients().clear()
    psexec_clients._BROKEN.clear()


def test_owner_tags_tell_dead_from_live(dead_pid, live_pid):
    assert ownership.tag_is_dead(dead_pid[1])
    assert not ownership.tag_is_dead(live_pid[1])
    assert not ownership.tag_is_dead(ownership.owner_tag())  # this run
    assert not ownership.tag_is_dead(f"other-controller.invalid:{dead_pid[0]}:1")
    assert not ownership.tag_is_dead("garbage")
    live, ticks = live_pid[0], live_pid[1].rsplit(":", 1)[1]
    reused = f"{socket.gethostname()}:{live}:{int(ticks) + 12345}"  # same pid, another start: pid reused
    assert ownership.tag_is_dead(reused)


def test_the_next_run_removes_a_killed_runs_registrations_only(lab, dead_pid, live_pid):
    host = lab.machine(FAKE_HOST)
    host.gcs[G_FOREIGN] = "Docker"
    before = dict(host.gcs)
    inventory = fake_lab_inventory()
    pool = AgentPool(inventory)
    agent = pool.agent("hv-host")
    try:
        registration.register_guids(agent, G_KILLED, owner=dead_pid[1])  # the run that will be killed
        registration.register_guids(agent, [G_LIVE], owner=live_pid[1])  # a run still going
        registration.register_guids(agent, [G_OTHER_HOST], owner=f"other-controller.invalid:{dead_pid[0]}:1")
        registration.register_guids(agent, [G_MANUAL], owner=registration.manual_owner())  # `hvsock-matrix register`
        host.gcs[G_UNTAGGED] = "hvsock-matrix"  # an older harness's entry: no owner tag
        survivors = {g: host.gcs[g] for g in (G_LIVE, G_OTHER_HOST, G_UNTAGGED, G_MANUAL)}

        guard = registration.RegistrationGuard(inventory, agent_for=lambda n: agent, guids=G_KILLED)
        with guard:
            assert sorted(guard.swept["hv-host"]) == sorted(G_KILLED)
            assert sorted(guard.reports["hv-host"].added) == sorted(G_KILLED)  # ours now, not "present"
            assert host.gcs_owner[G_KILLED[0]] == ownership.owner_tag()
        assert host.gcs == {**before, **survivors}
    finally:
        pool.close()


def test_the_next_run_removes_a_killed_runs_paexec_services_only(lab, dead_pid, live_pid):
    me = socket.gethostname()
    scm = FakeServiceManager.of(FAKE_HOST)
    leftovers = {
        f"PAExec-{dead_pid[0]}-{me}": "killed run of this controller",
        f"PAExec-{live_pid[0]}-{me}": "live run of this controller",
        f"PAExec-{dead_pid[0]}-OTHER-CONTROLLER": "another controller",
    }
    for name in leftovers:
        scm.services[name] = FakePsexecClient("x.invalid")  # created by earlier processes
        scm.exes.add(name + ".exe")
    FakePsexecClient.created.clear()
    inventory = fake_lab_inventory()
    transport = PsexecTransport(inventory.nodes["hv-host"], inventory)
    try:
        transport.run(["cmd.exe", "/c", "ver"], timeout=30)
        mine = FakePsexecClient.created[0].service_name
        assert sorted(scm.services) == sorted([mine, f"PAExec-{live_pid[0]}-{me}",
                                               f"PAExec-{dead_pid[0]}-OTHER-CONTROLLER"])
        assert f"PAExec-{dead_pid[0]}-{me}.exe" not in scm.exes
    finally:
        transport.close()
    assert sorted(scm.exes) == sorted([f"PAExec-{live_pid[0]}-{me}.exe", f"PAExec-{dead_pid[0]}-OTHER-CONTROLLER.exe"])


def test_kept_registrations_are_not_swept_by_the_next_run(lab):
    """--keep-registration: the entries outlive their run on purpose, tagged as `hvsock-matrix register`
    tags them (manual:<user>@<host>): no run sweeps them, `hvsock-matrix unregister` removes them."""
    inventory = fake_lab_inventory()
    pool = AgentPool(inventory)
    agent = pool.agent("hv-host")
    try:
        with registration.RegistrationGuard(inventory, agent_for=lambda n: agent, guids=G_KILLED, keep=True):
            pass
        with registration.RegistrationGuard(inventory, agent_for=lambda n: agent, guids=[G_LIVE]) as guard:
            assert guard.swept["hv-host"] == []
        assert sorted(lab.machine(FAKE_HOST).gcs) == sorted(G_KILLED)
        assert set(lab.machine(FAKE_HOST).gcs_owner.values()) == {registration.manual_owner()}
    finally:
        pool.close()


def test_a_killed_xdist_runs_guids_are_swept(lab, dead_pid):
    """Issue 18 defect 4: xdist workers registered with keep=True and no owner tag, so a killed xdist
    run's GUIDs stayed forever. Workers now register under the controller's tag (keep: the controller
    removes them at the end); when the controller was killed, the next run sweeps them."""
    inventory = fake_lab_inventory()
    pool = AgentPool(inventory)
    agent = pool.agent("hv-host")
    try:
        # what a worker of the (then killed) controller dead_pid did
        with registration.RegistrationGuard(inventory, agent_for=lambda n: agent, guids=G_KILLED, keep=True,
                                            owner=dead_pid[1]):
            pass
        assert set(lab.machine(FAKE_HOST).gcs_owner.values()) == {dead_pid[1]}
        with registration.RegistrationGuard(inventory, agent_for=lambda n: agent, guids=[G_LIVE]) as guard:
            assert sorted(guard.swept["hv-host"]) == sorted(G_KILLED)
        assert lab.machine(FAKE_HOST).gcs == {}
    finally:
        pool.close()
