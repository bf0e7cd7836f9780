"""Service registration: which GUIDs a run needs, idempotent add, removal of only what was added."""
from __future__ import annotations

import pytest

from harness import addresses
from harness.cell import Cell
from harness.errors import NodeError
from harness.hyperv import registration
from harness.hyperv.registration import RegistrationGuard
from harness.node import Access, Node
from harness.transports import psexec
from harness.transports.psexec import PsexecTransport
from tests.fakes.fake_psexec import FakePsexecClient
from tests.fakes.fake_windows import (FAKE_HOST, FAKE_PASSWORD_ENV, FAKE_VM, FakeHyperVLab, fake_lab_inventory,
                                      fake_lab_machines)

G19000 = "00004a38-facb-11e6-bd58-64006a7986d3"
WINDOWS_ONLY = "9866c7bc-0c89-4cb0-9427-5b526d1ae83b"


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    FakePsexecClient.created.clear()
    yield FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    psexec.shared_clients().clear()


def transports(inventory):
    made = {}

    def transport_for(node):
        made.setdefault(node.name, PsexecTransport(node, inventory))
        return made[node.name]
    return transport_for, made


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


def test_register_is_idempotent_and_reports_what_it_added(lab):
    inventory = fake_lab_inventory()
    host = PsexecTransport(inventory.node("hv-host"), inventory)
    first = registration.register_guids(host, {G19000, WINDOWS_ONLY})
    assert sorted(first.added) == sorted([G19000, WINDOWS_ONLY]) and first.present == []
    assert lab.machine(FAKE_HOST).gcs == {G19000: "hvsock-matrix", WINDOWS_ONLY: "hvsock-matrix"}
    second = registration.register_guids(host, {G19000, WINDOWS_ONLY})
    assert second.added == [] and sorted(second.present) == sorted([G19000, WINDOWS_ONLY])
    assert registration.list_registered(host) == {G19000: "hvsock-matrix", WINDOWS_ONLY: "hvsock-matrix"}
    host.close()


def test_unregister_never_removes_someone_elses_entry(lab):
    lab.machine(FAKE_HOST).gcs[WINDOWS_ONLY] = "MyGcs"
    inventory = fake_lab_inventory()
    host = PsexecTransport(inventory.node("hv-host"), inventory)
    registration.register_guids(host, {G19000})
    states = registration.unregister_guids(host, {G19000, WINDOWS_ONLY, registration.service_guid(19001)})
    assert states == {"removed": [G19000], "absent": [registration.service_guid(19001)], "foreign": [WINDOWS_ONLY]}
    assert lab.machine(FAKE_HOST).gcs == {WINDOWS_ONLY: "MyGcs"}
    host.close()


def test_register_on_a_machine_without_hyperv_says_so_in_one_line(lab):
    inventory = fake_lab_inventory()
    vm = PsexecTransport(inventory.node("win-vm"), inventory)
    with pytest.raises(NodeError) as err:
        registration.register_guids(vm, {G19000})
    assert str(err.value) == ("node win-vm: no GuestCommunicationServices registry key: "
                              "is the Hyper-V role installed on this host?")
    vm.close()


def test_guard_registers_on_hyperv_hosts_only_and_removes_only_what_it_added(lab):
    lab.machine(FAKE_HOST).gcs[registration.service_guid(19001)] = "hvsock-matrix"  # left by an earlier run
    inventory = fake_lab_inventory()
    transport_for, made = transports(inventory)
    with RegistrationGuard(inventory, cells=[cell(19000), cell(19001)], transport_for=transport_for) as guard:
        assert guard.added == {"hv-host": [G19000]}
        assert set(lab.machine(FAKE_HOST).gcs) == {G19000, registration.service_guid(19001)}
    assert guard.removed == {"hv-host": [G19000]}
    assert set(lab.machine(FAKE_HOST).gcs) == {registration.service_guid(19001)}
    assert all(address == FAKE_HOST for address, _ in lab.scripts)  # the VM was never asked
    assert not any(name == "cleanup" for c in FakePsexecClient.created for name in c.names())


def test_guard_keep_leaves_registrations_in_place(lab):
    inventory = fake_lab_inventory()
    transport_for, _ = transports(inventory)
    with RegistrationGuard(inventory, cells=[cell(19000)], keep=True, transport_for=transport_for):
        pass
    assert set(lab.machine(FAKE_HOST).gcs) == {G19000}


def test_guard_removes_even_when_the_run_raises(lab):
    inventory = fake_lab_inventory()
    transport_for, _ = transports(inventory)
    with pytest.raises(RuntimeError):
        with RegistrationGuard(inventory, guids={G19000}, transport_for=transport_for):
            raise RuntimeError("run crashed")
    assert lab.machine(FAKE_HOST).gcs == {}


def test_guard_strict_failure_undoes_other_hosts_and_raises(lab, monkeypatch):
    second = Node("hv-host2", "host", "windows", "hyperv",
                  Access(kind="psexec", host="hv-host2.fake.invalid", password_env="HVSOCK_UNSET_FOR_TEST"))
    monkeypatch.delenv("HVSOCK_UNSET_FOR_TEST", raising=False)
    inventory = fake_lab_inventory(extra_nodes=[second])
    transport_for, _ = transports(inventory)
    with pytest.raises(NodeError, match="HVSOCK_UNSET_FOR_TEST"):
        with RegistrationGuard(inventory, guids={G19000}, transport_for=transport_for):
            pytest.fail("the run must not start")
    assert lab.machine(FAKE_HOST).gcs == {}


def test_guard_non_strict_records_the_failing_host_and_goes_on(lab, monkeypatch):
    second = Node("hv-host2", "host", "windows", "hyperv",
                  Access(kind="psexec", host="hv-host2.fake.invalid", password_env="HVSOCK_UNSET_FOR_TEST"))
    monkeypatch.delenv("HVSOCK_UNSET_FOR_TEST", raising=False)
    inventory = fake_lab_inventory(extra_nodes=[second])
    transport_for, _ = transports(inventory)
    with RegistrationGuard(inventory, guids={G19000}, transport_for=transport_for, strict=False) as guard:
        assert guard.added == {"hv-host": [G19000]}
        assert "HVSOCK_UNSET_FOR_TEST" in guard.errors["hv-host2"]
    assert lab.machine(FAKE_HOST).gcs == {}


def test_guard_with_nothing_to_register_contacts_nobody(lab):
    inventory = fake_lab_inventory()
    with RegistrationGuard(inventory, cells=[], transport_for=lambda node: pytest.fail("contacted")):
        pass
    assert lab.scripts == []
