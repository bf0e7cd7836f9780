"""Scenario loading and expansion: documented cells, selectors, pairs, ports, overrides, skips."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.inventory import load_inventory
from harness.outcome import Outcome
from harness.scenario import expand, load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCEN = ROOT / "scenarios"
INV = load_inventory(ROOT / "inventory" / "hyperv-lab.example.yaml")
O, X, U = Outcome.O, Outcome.X, None

# The digest's tables (documented-results.md) against the example inventory's node names.
DOCUMENTED = [
    ("A1", "hv-host", "wildcard", "win-vm", "parent", O),
    ("A2", "hv-host", "wildcard", "hv-host", "loopback", O),
    ("A3", "win-vm", "wildcard", "hv-host", "server", O),
    ("A4", "win-vm", "wildcard", "win-vm", "loopback", O),
    ("A5", "hv-host", "loopback", "win-vm", "parent", O),
    ("A6", "hv-host", "loopback", "hv-host", "loopback", O),
    ("A7", "win-vm", "loopback", "hv-host", "server", X),
    ("A8", "win-vm", "loopback", "win-vm", "loopback", O),
    ("A9", "hv-host", "children", "win-vm", "parent", O),
    ("A10", "hv-host", "children", "hv-host", "loopback", O),
    ("A11", "win-vm", "children", "hv-host", "server", X),
    ("A12", "win-vm", "children", "win-vm", "loopback", O),
    ("A3-literal", "win-vm", "wildcard", "hv-host", "loopback", U),
    ("A4-literal", "win-vm", "wildcard", "win-vm", "self", U),
    ("B1", "hv-host", "wildcard", "linux-vm-hv", "parent", O),
    ("B2", "linux-vm-hv", "wildcard", "hv-host", "server", O),
    ("B3", "linux-vm-hv", "wildcard", "linux-vm-hv", "loopback", O),
    ("C1", "kvm-guest", "wildcard", "kvm-host", "server", O),
    ("C2", "kvm-host", "wildcard", "kvm-guest", "parent", O),
    ("C3", "kvm-guest", "wildcard", "kvm-host", "server", O),
]


@pytest.fixture(scope="module")
def all_cells():
    cells = {}
    for path in sorted(SCEN.glob("[abcu]*.yaml")):
        for cell in expand(load_scenario(path), INV):
            assert cell.id not in cells, cell.id
            cells[cell.id] = cell
    return cells


@pytest.mark.parametrize("label,server,bind,client,target,expected", DOCUMENTED, ids=[d[0] for d in DOCUMENTED])
def test_documented_cells_are_encoded(all_cells, label, server, bind, client, target, expected):
    matches = [c for c in all_cells.values() if c.label == label]
    assert len(matches) == 1
    cell = matches[0]
    assert (cell.server_on, cell.bind, cell.client_on, cell.target) == (server, bind, client, target)
    assert cell.expected == expected
    assert cell.source and cell.skip_reason is None
    assert cell.id.startswith(f"{label}[{server}:{bind}-from-{client}:{target}")


def test_disputed_cells_carry_the_note(all_cells):
    disputed = sorted(c.label for c in all_cells.values() if c.disputed)
    assert disputed == ["A3-literal", "A4-literal"]
    for c in all_cells.values():
        if c.disputed:
            assert c.expected is None and "literal" in c.note.lower()


def test_matrix_b_uses_the_documents_port_and_payload(all_cells):
    b = {c.label: c for c in all_cells.values() if c.scenario == "B"}
    assert b["B1"].port == 19000 and b["B1"].payload == "test"
    assert len({c.port for c in b.values()}) == len(b)  # parallel-safe


def test_matrix_c_ports_and_ssh_over_vsock(all_cells):
    c = {x.label: x for x in all_cells.values() if x.scenario == "C"}
    assert (c["C1"].port, c["C2"].port, c["C3"].port) == (1234, 4321, 22)
    assert c["C3"].driver.kind == "command"
    assert "VSOCK-LISTEN:{port}" in c["C3"].driver.server and "TCP:localhost:22" in c["C3"].driver.server
    assert "VSOCK-CONNECT:{target}:{port}" in c["C3"].driver.client


def test_undocumented_cells_have_no_expectation(all_cells):
    undoc = [c for c in all_cells.values() if c.scenario in ("U",) or (c.scenario == "A" and c.label is None)]
    assert len(undoc) > 50
    assert all(c.expected is None for c in undoc)
    binds = {c.bind for c in undoc}
    targets = {c.target for c in undoc}
    assert {"parent", "self"} <= binds and {"children", "broadcast"} <= targets


def test_axes_do_not_duplicate_explicit_cells(all_cells):
    a_keys = [(c.server_on, c.bind, c.client_on, c.target) for c in all_cells.values() if c.scenario == "A"]
    assert len(a_keys) == len(set(a_keys))
    a1 = [c for c in all_cells.values() if c.scenario == "A" and
          (c.server_on, c.bind, c.client_on, c.target) == ("hv-host", "wildcard", "win-vm", "parent")]
    assert [c.label for c in a1] == ["A1"]


def test_every_scenario_port_is_unique_within_its_scenario(all_cells):
    for name in ("A", "B", "U"):
        ports = [c.port for c in all_cells.values() if c.scenario == name]
        assert len(ports) == len(set(ports)), name


# --- expansion rules on small files --------------------------------------------------------
def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def inventory(tmp_path, text):
    return load_inventory(write(tmp_path, text, "inv.yaml"))


TWO_VMS = """\
    inventory: two
    nodes:
      - {name: h1, role: host, os: windows}
      - {name: v1, role: vm, parent: h1, os: windows, vm_id: 00000000-0000-0000-0000-0000000000a1}
      - {name: v2, role: vm, parent: h1, os: windows, vm_id: 00000000-0000-0000-0000-0000000000a2}
      - {name: h2, role: host, os: windows}
      - {name: v3, role: vm, parent: h2, os: windows, vm_id: 00000000-0000-0000-0000-0000000000a3}
    """


def test_pairs_related_keeps_same_node_parent_child_and_siblings(tmp_path):
    inv = inventory(tmp_path, TWO_VMS)
    sc = load_scenario(write(tmp_path, """\
        scenario: S
        port: 30000
        axes: {server.on: [windows-vm], server.bind: [wildcard], client.on: [vm, host], client.target: [server]}
        """))
    pairs = {(c.server_on, c.client_on) for c in expand(sc, inv) if not c.skip_reason}
    assert pairs == {("v1", "v1"), ("v1", "v2"), ("v2", "v1"), ("v2", "v2"), ("v3", "v3"),
                     ("v1", "h1"), ("v2", "h1"), ("v3", "h2")}


def test_pairs_any_keeps_every_pair(tmp_path):
    inv = inventory(tmp_path, TWO_VMS)
    sc = load_scenario(write(tmp_path, """\
        scenario: S
        port: 30000
        pairs: any
        axes: {server.on: [windows-vm], server.bind: [wildcard], client.on: [host], client.target: [server]}
        """))
    assert len(expand(sc, inv)) == 3 * 2


def test_parent_qualified_selector(tmp_path):
    inv = load_inventory(ROOT / "inventory" / "hyperv-lab.example.yaml")
    sc = load_scenario(write(tmp_path, """\
        scenario: S
        port: 30000
        cells:
          - server: {on: linux-vm@windows-host, bind: wildcard}
            client: {on: server, target: loopback}
          - server: {on: linux-vm@kvm-host, bind: wildcard}
            client: {on: server, target: loopback}
          - server: {on: linux-vm, bind: wildcard}
            client: {on: server, target: parent}
        """))
    cells = expand(sc, inv)
    assert [c.server_on for c in cells] == ["linux-vm-hv", "kvm-guest", "linux-vm-hv", "kvm-guest"]


def test_missing_nodes_give_skipped_cells_with_the_reason(tmp_path):
    inv = inventory(tmp_path, "inventory: lonely\nnodes:\n  - {name: h1, role: host, os: linux}\n")
    sc = load_scenario(write(tmp_path, """\
        scenario: S
        port: 30000
        cells:
          - label: L1
            server: {on: windows-vm, bind: wildcard}
            client: {on: server, target: loopback}
          - label: L2
            server: {on: h1, bind: wildcard}
            client: {on: linux-vm, target: parent}
          - label: L3
            server: {on: h1, bind: wildcard}
            client: {on: ghost, target: parent}
        """))
    cells = {c.label: c for c in expand(sc, inv)}
    assert cells["L1"].skip_reason == "inventory lonely has no windows-vm node"
    assert cells["L1"].id == "L1[windows-vm:wildcard-from-windows-vm:loopback]"
    assert cells["L2"].skip_reason == "inventory lonely has no linux-vm node"
    assert cells["L2"].server_on == "h1" and cells["L2"].client_on == "linux-vm"
    assert cells["L3"].skip_reason == "inventory lonely has no ghost node"


def test_unrelated_pair_is_skipped_with_the_reason(tmp_path):
    inv = inventory(tmp_path, TWO_VMS)
    sc = load_scenario(write(tmp_path, """\
        scenario: S
        port: 30000
        cells:
          - {label: L, server: {on: h2, bind: wildcard}, client: {on: v1, target: parent}}
        """))
    (cell,) = expand(sc, inv)
    assert "no v1 node related to h2" in cell.skip_reason


def test_without_inventory_every_cell_is_skipped(tmp_path):
    cells = expand(load_scenario(SCEN / "a-hyperv-wildcards.yaml"), None)
    assert cells and all(c.skip_reason == "no inventory (give --inventory PATH)" for c in cells)
    assert cells[0].id == "A1[windows-host:wildcard-from-windows-vm:parent]"


def test_port_base_gives_each_cell_its_own_port_and_cells_may_override(tmp_path):
    inv = inventory(tmp_path, TWO_VMS)
    sc = load_scenario(write(tmp_path, """\
        scenario: S
        port_base: 40000
        cells:
          - {label: P, server: {on: v1, bind: wildcard}, client: {on: h1, target: server}, port: 22}
        axes: {server.on: [h1], server.bind: [wildcard, loopback], client.on: [v1], client.target: [parent]}
        """))
    cells = expand(sc, inv)
    assert [c.port for c in cells] == [22, 40001, 40002]
    assert [c.port for c in expand(sc, inv)] == [22, 40001, 40002]  # stable


def test_explicit_cell_overrides_the_axes_cell_even_via_a_node_name(tmp_path):
    inv = inventory(tmp_path, TWO_VMS)
    sc = load_scenario(write(tmp_path, """\
        scenario: S
        port: 30000
        cells:
          - {label: K, server: {on: h2, bind: any}, client: {on: v3, target: host}, expect: X}
        axes: {server.on: [windows-host], server.bind: [wildcard], client.on: [windows-vm], client.target: [parent]}
        """))
    cells = expand(sc, inv)
    keyed = {(c.server_on, c.client_on): c for c in cells}
    assert len(cells) == len(keyed) == 3
    assert keyed[("h2", "v3")].label == "K" and keyed[("h2", "v3")].expected is Outcome.X
    assert keyed[("h1", "v1")].expected is None


def test_duplicate_explicit_cells_after_expansion_are_an_error(tmp_path):
    inv = inventory(tmp_path, TWO_VMS)
    path = write(tmp_path, """\
        scenario: S
        port: 30000
        cells:
          - {label: K1, server: {on: h2, bind: wildcard}, client: {on: v3, target: parent}}
          - {label: K2, server: {on: windows-host, bind: wildcard}, client: {on: v3, target: parent}}
        """)
    sc = load_scenario(path)
    with pytest.raises(InputError, match="duplicate cell K1") as err:
        expand(sc, inv)
    assert err.value.where == f"{path}:5"


def test_tcp_ports_are_checked_against_tcp_nodes(tmp_path):
    inv = inventory(tmp_path, """\
        inventory: net
        nodes:
          - {name: a, role: host, os: linux, family: tcp, address: 10.0.0.1}
          - {name: b, role: vm, parent: a, os: linux, family: tcp, address: 10.0.0.2}
        """)
    path = write(tmp_path, """\
        scenario: T
        port_base: 65535
        axes: {server.on: [a], server.bind: [wildcard, loopback], client.on: [b], client.target: [parent]}
        """)
    sc = load_scenario(path)
    with pytest.raises(InputError, match=r"tcp port 65536 out of range 1\.\.65535") as err:
        expand(sc, inv)
    assert err.value.where == f"{path}:2"


def test_command_driver_and_cell_overrides(tmp_path):
    sc = load_scenario(write(tmp_path, """\
        scenario: D
        port: 30000
        payload: hi
        timeout: 3
        driver: {kind: command, server: "ConsoleApp1.exe /server {bind}", client: "ConsoleApp1.exe /client {target}"}
        cells:
          - server: {on: windows-host, bind: wildcard}
            client: {on: windows-vm, target: parent}
          - server: {on: windows-host, bind: loopback}
            client: {on: windows-vm, target: parent}
            driver: probe
            payload: other
            timeout: 1.5
            service: "{9866C7BC-0C89-4CB0-9427-5B526D1AE83B}"
        """))
    c1, c2 = expand(sc, None)
    assert c1.driver.kind == "command" and c1.driver.server == "ConsoleApp1.exe /server {bind}"
    assert c1.id.endswith("+command]") and (c1.payload, c1.timeout) == ("hi", 3)
    assert c2.driver.kind == "probe" and (c2.payload, c2.timeout) == ("other", 1.5)
    assert c2.service == "9866c7bc-0c89-4cb0-9427-5b526d1ae83b"


def test_tokens_are_stored_canonically(tmp_path):
    sc = load_scenario(write(tmp_path, """\
        scenario: S
        port: 30000
        cells:
          - server: {on: windows-vm, bind: "{B50F20E6-CF19-1796-BA60-D9CFE2D8FE29}"}
            client: {on: windows-host, target: local}
          - server: {on: linux-vm, bind: 4294967295}
            client: {on: linux-host, target: vm:kvm-guest}
        """))
    c1, c2 = expand(sc, None)
    assert c1.bind == "b50f20e6-cf19-1796-ba60-d9cfe2d8fe29" and c1.target == "loopback"
    assert c2.bind == "4294967295" and c2.target == "node:kvm-guest"


def test_defined_at_points_at_the_cell_or_axes(tmp_path):
    path = write(tmp_path, """\
        scenario: S
        port: 30000
        cells:
          - server: {on: h, bind: wildcard}
            client: {on: server, target: loopback}
        axes: {server.on: [h], server.bind: [loopback], client.on: [server], client.target: [loopback]}
        """)
    c1, c2 = expand(load_scenario(path), None)
    assert (c1.defined_at, c2.defined_at) == (f"{path}:4", f"{path}:6")


def test_needs_nodes_leaves_every_cell_not_run_on_a_lab_without_them(tmp_path):
    """vsock-netns.yaml names l1/vm21/vm22 too: on a lab without the namespace nodes those cells
    would run and contradict their namespace expectations; needs_nodes skips the whole scenario."""
    lab = load_inventory(str(Path(__file__).resolve().parent.parent / "inventory" / "lab-in-a-box.yaml"))
    netns = load_scenario(Path(__file__).resolve().parent.parent / "scenarios" / "vsock-netns.yaml")
    cells = expand(netns, lab)
    assert cells and all(c.skip_reason for c in cells)
    own_nodes_here = [c for c in cells if {c.server_on, c.client_on} <= set(lab.nodes)]
    assert any(c.server_on == "vm22" and c.client_on == "l1" for c in own_nodes_here)
    assert all("no l1-global0 node (needs_nodes)" in str(c.skip_reason) for c in own_nodes_here)
    bad = tmp_path / "s.yaml"
    bad.write_text("scenario: S\nport_base: 30000\nneeds_nodes: [l1]\ncells:\n"
                   "  - {server: {on: l1, bind: any}, client: {on: l1, target: loopback}}\n")
    assert [c.skip_reason for c in expand(load_scenario(bad), lab)] == [None]  # present: runs
