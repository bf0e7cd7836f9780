"""Drivers and runner on the controller itself (access local, tcp on 127.0.0.1 only), plus the
pure parts: errno recognition, template rendering, and the socat VSOCK refusal.
"""
from __future__ import annotations

import socket

import pytest

from harness.agents import AgentPool
from harness.cell import Cell, Driver
from harness.drivers import command, socat
from harness.drivers.errnos import find_errno
from harness.drivers.spawned import start_margin
from harness.node import Access, Inventory, Node
from harness.outcome import Outcome
from harness.runner import run_cell
from harness.transports import open_transport


def local_inventory(**extra: Node) -> Inventory:
    nodes = {"ctl": Node(name="ctl", role="host", os="linux", family="tcp", address="127.0.0.1",
                         access=Access(kind="local"))}
    nodes.update(extra)
    return Inventory(name="local", path="<local>", nodes=nodes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cell(bind, target, port, **kw) -> Cell:
    return Cell(scenario="L", server_on=kw.pop("server_on", "ctl"), bind=bind, client_on=kw.pop("client_on", "ctl"),
                target=target, port=port, timeout=kw.pop("timeout", 5), **kw)


@pytest.fixture
def pool():
    p = AgentPool(local_inventory())
    yield p
    p.close()


# -- pure ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("E connect(5, AF=2 127.0.0.1:1, 16): Connection refused", ("ECONNREFUSED", 111)),
    ("error: ETIMEDOUT while connecting", ("ETIMEDOUT", 110)),
    ("Unhandled exception: WSAECONNREFUSED", ("WSAECONNREFUSED", 10061)),
    ("SocketException (10060): no answer", ("WSAETIMEDOUT", 10060)),
    ("E bind(5, {AF=2 10.9.9.9:1}, 16): Cannot assign requested address", ("EADDRNOTAVAIL", 99)),
    ("ERROR: something else entirely", None),
    ("", None),
])
def test_find_errno(text, expected):
    assert find_errno(text) == expected


def test_render_quotes_values_and_rejects_unknown_placeholders():
    argv = command.render("tool --to {target}:{port} --say {payload}",
                          {"target": "10.0.0.1", "port": 5, "payload": "two words; rm -rf /"})
    assert argv == ["tool", "--to", "10.0.0.1:5", "--say", "two words; rm -rf /"]
    with pytest.raises(ValueError, match=r"unknown placeholder \{oops\}"):
        command.render("tool {oops}", {})


def test_socat_addresses_follow_the_documents():
    assert socat.listen_address("vsock", "4294967295", 19000) == "VSOCK-LISTEN:19000,reuseaddr"
    assert socat.connect_address("vsock", "2", 19000, 6) == "VSOCK-CONNECT:2:19000,connect-timeout=6"
    assert socat.listen_address("tcp", "127.0.0.1", 5) == "TCP4-LISTEN:5,reuseaddr,bind=127.0.0.1"


def test_socat_waits_for_the_echo_as_long_as_the_server_node_takes_to_start_it():
    """Connect within the cell's timeout; the reply may also take the server node's process start."""
    assert socat.server_argv("vsock", "4294967295", 1234, 310) == [
        "sh", "-c", 'exec socat -d -d -t "$1" "$2" "$3" 2>&1', "socat-server", "310",
        "VSOCK-LISTEN:1234,reuseaddr", socat.ECHO]
    assert socat.client_argv("vsock", "21", 1234, 10, 310) == [
        "socat", "-t", "310", "-T", "310", "-", "VSOCK-CONNECT:21:1234,connect-timeout=10"]
    nested = Node(name="vm21", role="vm", parent="l1", os="linux", family="vsock", cid=21,
                  access=Access(kind="ssh", host="127.0.0.1", connect_timeout=300))
    assert start_margin(nested) == 300 and start_margin(local_inventory().nodes["ctl"]) == 5


def test_command_templates_get_the_cells_timeout():
    assert command.render("socat -T {timeout} -u VSOCK-CONNECT:{target}:{port} STDOUT",
                          {"timeout": "120", "target": "21", "port": 22}) == [
        "socat", "-T", "120", "-u", "VSOCK-CONNECT:21:22", "STDOUT"]


def test_socat_driver_refuses_vsock_off_lab_nodes_without_touching_them():
    """The controller's /dev/vsock belongs to the infrastructure: no socat VSOCK here, ever."""
    vm = Node(name="vm1", role="host", os="linux", family="vsock", cid=21, lab_node=False,
              access=Access(kind="local"))
    inv = Inventory(name="v", path="<v>", nodes={"vm1": vm})
    opened = []

    def recording_factory(node, inventory):
        opened.append(node.name)
        return open_transport(node, inventory)

    p = AgentPool(inv, transport_factory=recording_factory)
    obs = run_cell(Cell(scenario="V", server_on="vm1", bind="wildcard", client_on="vm1", target="loopback",
                        port=19000, driver=Driver(kind="socat")), inv, p)
    p.close()
    assert obs.outcome is Outcome.E and obs.detail.startswith("refused: socat VSOCK on vm1")
    assert opened == [] and obs.commands == []


# -- real cells on 127.0.0.1 -------------------------------------------------------------------------
def test_probe_driver_locally_O_X_B(pool):
    inv = pool.inventory
    o = run_cell(cell("loopback", "loopback", free_port()), inv, pool)
    assert o.outcome is Outcome.O and o.reply == "Hello: World!"
    port = free_port()
    with socket.socket() as held:  # someone else holds the port: bind fails with EADDRINUSE
        held.bind(("127.0.0.1", port))
        held.listen(1)
        b = run_cell(cell("loopback", "loopback", port), inv, pool)
    assert (b.outcome, b.bind_errno_name) == (Outcome.B, "EADDRINUSE")
    elsewhere = run_cell(cell("192.0.2.1", "loopback", free_port()), inv, pool)  # not an address of this machine
    assert (elsewhere.outcome, elsewhere.bind_errno_name) == (Outcome.B, "EADDRNOTAVAIL")
    na = run_cell(cell("children", "loopback", free_port()), inv, pool)
    assert na.outcome is Outcome.NA and "children" in na.detail.lower()


def test_socat_driver_locally_over_tcp(pool):
    inv = pool.inventory
    o = run_cell(cell("loopback", "loopback", free_port(), driver=Driver(kind="socat")), inv, pool)
    assert o.outcome is Outcome.O and o.reply == "Hello: World!", o.detail
    # server bound to loopback, client aimed at an address where nothing listens on that port
    x = run_cell(cell("loopback", "127.0.0.2", free_port(), driver=Driver(kind="socat")), inv, pool)
    assert (x.outcome, x.errno_name) == (Outcome.X, "ECONNREFUSED"), x.detail


def test_command_driver_locally(pool):
    inv = pool.inventory
    d = Driver(kind="command", client="sh -c 'echo connect: Connection refused >&2; exit 1'")
    x = run_cell(cell("loopback", "loopback", free_port(), driver=d), inv, pool)
    assert (x.outcome, x.errno_name) == (Outcome.X, "ECONNREFUSED")
    d = Driver(kind="command", client="sh -c 'echo it broke >&2; exit 1'")
    e = run_cell(cell("loopback", "loopback", free_port(), driver=d), inv, pool)
    assert e.outcome is Outcome.E  # a failure nobody can name is never X
    d = Driver(kind="command", client="sleep 30")
    cut = run_cell(cell("loopback", "loopback", free_port(), timeout=1, driver=d), inv, pool)
    assert cut.outcome is Outcome.E and "cut at its timeout" in cut.detail


def test_pool_facts_asks_every_node_and_names_the_one_that_failed():
    dead = Node(name="dead", role="host", os="linux", family="tcp", address="127.0.0.1",
                access=Access(kind="ssh", host="127.0.0.1", port=free_port(), user="nobody",
                              use_ssh_config=False, connect_timeout=5))
    p = AgentPool(local_inventory(dead=dead))
    try:
        facts = p.facts(["ctl", "dead"])
    finally:
        p.close()
    assert set(facts) == {"ctl", "dead"}
    assert facts["ctl"]["hostname"] == socket.gethostname() and "error" not in facts["ctl"]
    assert "dead" in facts["dead"]["error"] and "hostname" not in facts["dead"]
    assert p.facts([]) == {}
