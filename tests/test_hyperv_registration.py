"""Service registration: which GUIDs a run needs, idempotent add, removal of only what was added.

The host's probe does the registry work (harness/probe/registry.py, `services`), run here by the
fake lab against a fake winreg over the machine's entries (tests/fakes/fake_winreg.py).
"""
from __future__ import annotations

import pytest

from harness import addresses
from harness.agents import AgentPool
from harness.cell import Cell
from harness.errors import NodeError
from harness.hyperv import ownership, registration
from harness.hyperv.registration import RegistrationGuard
from harness.node import Access, Node
from harness.transports import psexec
from tests.fakes.fake_psexec import FakePsexecClient
from tests.fakes.fake_windows import FAKE_HOST, FAKE_PASSWORD_ENV, FakeHyperVLab, fake_lab_inventory, fake_lab_machines

G19000 = "00004a38-facb-11e6-bd58-64006a7986d3"
WINDOWS_ONLY = "9866c7bc-0c89-4cb0-9427-5b526d1ae83b"


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    FakePsexecClient.created.clear()
    yield FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    psexec.shared_clients().clear()


@pytest.fixture
def pool():
    pools = []

    def make(inventory):
        pools.append(AgentPool(inventory))
        return pools[-1]
    yield make
    for p in pools:
        p.close()


def agents(pool_of, inventory):
    made = pool_of(inventory)
    return (lambda node: made.agent(node.name)), made


def services_sent_to(lab) -> list[str]:
    """The machines that were asked to run the probe's `services` (register/unregister/list)."""
    return [address for address, argv in lab.commands if "services" in argv]


def cell(port, service=None, server="hv-host", client="win-vm", skip=None):
    return Cell("A", server, "wildcard", client, "parent", port, service=service, skip_reason=skip)


def test_service_guid_follows_the_vsock_template_and_addresses_module():
    assert registration.service_guid(19000) == G19000 == addresses.service_guid_for(19000)
    assert registration.service_guid(19000, WINDOWS_ONLY.upper()) == WINDOWS_ONLY
    assert registration.template_port(G19000) == 19000
    assert registration.template_port(WINDOWS_ONLY) is None


def test_guids_for_cells_takes_ports_and_explicit_services_and_leaves_skipped_out():
    cells = [cell(19000), cell(19000), cell(19001), cell(19002, service=WINDOWS_ONLY), cell(19003, skip="no node")]
    assert registration.guids_for_cells(cells) == {G19000, registration.service_guid(19001), WINDOWS_ONLY}


def test_guids_for_cells_leaves_tcp_only_cells_out_given_an_inventory():
    tcp = Node("box", "host", "linux", "tcp", Access(), address="127.0.0.1")
    inventory = fake_lab_inventory(extra_nodes=[tcp])
    cells = [cell(19000), Cell("T", "box", "wildcard", "box", "loopback", 5000)]
    assert registration.guids_for_cells(cells, inventory) == {G19000}


@pytest.mark.parametrize("text,expected", [("19000-19002", (19000, 19002)), ("19000", (19000, 19000))])
def test_parse_port_range(text, expected):
    assert registration.parse_port_range(text) == expected


@pytest.mark.parametrize("text", ["19002-19000", "a-b", "0-5", "1-2-3", "1-4294967295"])
def test_parse_port_range_rejects(text):
    with pytest.raises(ValueError, match="bad port range"):
        registration.parse_port_range(text)


def test_register_is_idempotent_and_reports_what_it_added(lab, pool):
    inventory = fake_lab_inventory()
    host = pool(inventory).agent("hv-host")
    first = registration.register_guids(host, {G19000, WINDOWS_ONLY})
    assert sorted(first.added) == sorted([G19000, WINDOWS_ONLY]) and first.present == []
    assert lab.machine(FAKE_HOST).gcs == {G19000: "hvsock-matrix", WINDOWS_ONLY: "hvsock-matrix"}
    assert lab.machine(FAKE_HOST).gcs_owner == {G19000: ownership.owner_tag(), WINDOWS_ONLY: ownership.owner_tag()}
    second = registration.register_guids(host, {G19000, WINDOWS_ONLY})
    assert second.added == [] and sorted(second.present) == sorted([G19000, WINDOWS_ONLY])
    assert sorted((e["guid"], e["element"]) for e in registration.list_registered(host)) == sorted(
        [(G19000, "hvsock-matrix"), (WINDOWS_ONLY, "hvsock-matrix")])


def test_unregister_never_removes_someone_elses_entry(lab, pool):
    lab.machine(FAKE_HOST).gcs[WINDOWS_ONLY] = "MyGcs"
    inventory = fake_lab_inventory()
    host = pool(inventory).agent("hv-host")
    registration.register_guids(host, {G19000})
    states = registration.unregister_guids(host, {G19000, WINDOWS_ONLY, registration.service_guid(19001)})
    assert states == {"removed": [G19000], "absent": [registration.service_guid(19001)], "foreign": [WINDOWS_ONLY]}
    assert lab.machine(FAKE_HOST).gcs == {WINDOWS_ONLY: "MyGcs"}


def test_a_run_never_removes_what_another_live_run_registered_or_relies_on(lab, pool):
    """Issue 18 defect 4: run A's cleanup removed keys by ElementName, so it deleted the GUIDs run B
    (another controller) registered or relied on. Now a run removes only keys carrying its own tag."""
    machine = lab.machine(FAKE_HOST)
    other_run = "other-controller.invalid:4242:77"
    machine.gcs[G19000], machine.gcs_owner[G19000] = "hvsock-matrix", other_run  # run B's, still going
    machine.gcs[WINDOWS_ONLY] = "hvsock-matrix"  # untagged: `register` of an older harness, or by hand
    inventory = fake_lab_inventory()
    agent_for, _ = agents(pool, inventory)
    G19001 = registration.service_guid(19001)
    with RegistrationGuard(inventory, agent_for=agent_for, guids={G19000, G19001, WINDOWS_ONLY}) as guard:
        assert guard.added == {"hv-host": [G19001]}  # the other two were present: never ours
    assert machine.gcs == {G19000: "hvsock-matrix", WINDOWS_ONLY: "hvsock-matrix"}
    assert machine.gcs_owner == {G19000: other_run}
    host = pool(inventory).agent("hv-host")
    states = registration.unregister_guids(host, {G19000, WINDOWS_ONLY})  # this run's tag: neither is ours
    assert states == {"removed": [], "absent": [], "foreign": [G19000, WINDOWS_ONLY]}
    assert set(machine.gcs) == {G19000, WINDOWS_ONLY}


def test_register_on_a_machine_without_hyperv_says_so_in_one_line(lab, pool):
    inventory = fake_lab_inventory()
    vm = pool(inventory).agent("win-vm")
    with pytest.raises(NodeError) as err:
        registration.register_guids(vm, {G19000})
    assert str(err.value) == ("node win-vm: no GuestCommunicationServices registry key: "
                              "is the Hyper-V role installed on this host?")


def test_guard_registers_on_hyperv_hosts_only_and_removes_only_what_it_added(lab, pool):
    lab.machine(FAKE_HOST).gcs[registration.service_guid(19001)] = "hvsock-matrix"  # left by an earlier run
    inventory = fake_lab_inventory()
    agent_for, _ = agents(pool, inventory)
    with RegistrationGuard(inventory, agent_for=agent_for, cells=[cell(19000), cell(19001)]) as guard:
        assert guard.added == {"hv-host": [G19000]}
        assert set(lab.machine(FAKE_HOST).gcs) == {G19000, registration.service_guid(19001)}
    assert guard.removed == {"hv-host": [G19000]}
    assert set(lab.machine(FAKE_HOST).gcs) == {registration.service_guid(19001)}
    assert set(services_sent_to(lab)) == {FAKE_HOST}  # the VM was never asked
    assert not any(name == "cleanup" for c in FakePsexecClient.created for name in c.names())


def test_guard_keep_leaves_registrations_in_place(lab, pool):
    inventory = fake_lab_inventory()
    agent_for, _ = agents(pool, inventory)
    with RegistrationGuard(inventory, agent_for=agent_for, cells=[cell(19000)], keep=True):
        pass
    assert set(lab.machine(FAKE_HOST).gcs) == {G19000}


def test_guard_removes_even_when_the_run_raises(lab, pool):
    inventory = fake_lab_inventory()
    agent_for, _ = agents(pool, inventory)
    with pytest.raises(RuntimeError), RegistrationGuard(inventory, agent_for=agent_for, guids={G19000}):
        raise RuntimeError("run crashed")
    assert lab.machine(FAKE_HOST).gcs == {}


def test_guard_strict_failure_undoes_other_hosts_and_raises(lab, pool, monkeypatch):
    second = Node("hv-host2", "host", "windows", "hyperv",
                  Access(kind="psexec", host="hv-host2.fake.invalid", password_env="HVSOCK_UNSET_FOR_TEST"))
    monkeypatch.delenv("HVSOCK_UNSET_FOR_TEST", raising=False)
    inventory = fake_lab_inventory(extra_nodes=[second])
    agent_for, _ = agents(pool, inventory)
    with pytest.raises(NodeError, match="HVSOCK_UNSET_FOR_TEST"), \
            RegistrationGuard(inventory, agent_for=agent_for, guids={G19000}):
        pytest.fail("the run must not start")
    assert lab.machine(FAKE_HOST).gcs == {}


def test_guard_non_strict_records_the_failing_host_and_goes_on(lab, pool, monkeypatch):
    second = Node("hv-host2", "host", "windows", "hyperv",
                  Access(kind="psexec", host="hv-host2.fake.invalid", password_env="HVSOCK_UNSET_FOR_TEST"))
    monkeypatch.delenv("HVSOCK_UNSET_FOR_TEST", raising=False)
    inventory = fake_lab_inventory(extra_nodes=[second])
    agent_for, _ = agents(pool, inventory)
    with RegistrationGuard(inventory, agent_for=agent_for, guids={G19000}, strict=False) as guard:
        assert guard.added == {"hv-host": [G19000]}
        assert "HVSOCK_UNSET_FOR_TEST" in guard.errors["hv-host2"]
    assert lab.machine(FAKE_HOST).gcs == {}


def test_guard_with_nothing_to_register_contacts_nobody(lab):
    inventory = fake_lab_inventory()
    with RegistrationGuard(inventory, agent_for=lambda node: pytest.fail("contacted"), cells=[]):
        pass
    assert lab.commands == []
