"""server.phase, client.phase, server.unprivileged and expect_peer (issue 21), without a lab.

The probe's side runs for real over TCP on loopback (the same code paths the vsock cells take:
listener.py and client.py do not branch on the family for phases); what the kernel says for
AF_VSOCK is the lab's business (scenarios/linux-kvm.yaml KVM-PH-*, docs/lab-measurements.md).
"""
from __future__ import annotations

import os
import socket

import pytest

from harness.cell import variant_of
from harness.drivers.probe import client_options, expected_peer
from harness.judgement import judge
from harness.node import Node
from harness.outcome import Observation, Outcome
from harness.probe.client import connect_once
from harness.probe.listener import Listener
from harness.scenario import load_scenario
from harness.scenario.expansion import expand


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("phase", ["bound", "none", "closed"])
def test_a_server_that_does_not_listen_refuses_the_client(phase):
    port = _free_port()
    listener = Listener("tcp", "127.0.0.1", port, timeout=5, phase=phase)
    event = listener.open()
    listener.start()
    try:
        assert event["event"] == "listening" and event["phase"] == phase
        result = connect_once("tcp", "127.0.0.1", port, timeout=3)
    finally:
        stopped = listener.stop()
    assert (result["outcome"], result["errno_name"], result["phase"]) == ("X", "ECONNREFUSED", "connect")
    assert stopped["accepted"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to nobody needs root")
def test_an_unprivileged_server_gets_eacces_below_1024_and_serves_above():
    low = Listener("tcp", "127.0.0.1", 1021, timeout=5, unprivileged=True).open()
    assert (low["event"], low["errno_name"], low["phase"], low["unprivileged"]) == ("bind_failed", "EACCES", "bind", True)
    port = _free_port()
    listener = Listener("tcp", "127.0.0.1", port, timeout=5, unprivileged=True)
    assert listener.open()["event"] == "listening"
    listener.start()
    try:
        result = connect_once("tcp", "127.0.0.1", port, timeout=3)
    finally:
        listener.stop()
    assert result["outcome"] == "O"
    assert os.geteuid() == 0  # the probe itself kept its privileges: only the child dropped them


@pytest.mark.parametrize("phase,step", [("bound", "bind"), ("retry", "connect"), ("second-cid", "connect")])
def test_client_phases_do_their_step_first_and_say_what_it_saw(phase, step):
    port = _free_port()
    listener = Listener("tcp", "127.0.0.1", port, timeout=5)
    listener.open()
    listener.start()
    try:
        result = connect_once("tcp", "127.0.0.1", port, timeout=3, phase=phase, first_addr="127.0.0.2")
    finally:
        listener.stop()
    first = result["first"]
    assert first["step"] == step
    if step == "connect":  # nothing listens where the first connect goes
        assert first["errno_name"] == "ECONNREFUSED"
        assert (first["port"], first["addr"]) == ((1, "127.0.0.1") if phase == "retry" else (port, "127.0.0.2"))
    else:
        assert first["local"].startswith("0.0.0.0:")
        assert result["outcome"] == "O"


def test_a_first_connect_that_succeeds_is_e_never_o():
    port = _free_port()
    listener = Listener("tcp", "127.0.0.1", port, timeout=5, count=0)
    listener.open()
    listener.start()
    try:
        result = connect_once("tcp", "127.0.0.1", port, timeout=3, phase="second-cid", first_addr="127.0.0.1")
    finally:
        listener.stop()
    assert result["outcome"] == "E" and "first connect of second-cid succeeded" in result["message"]


SCENARIO = """\
scenario: PH
port_base: 40000
cells:
  - label: P1
    server: {on: h, bind: any, phase: bound}
    client: {on: h, target: loopback}
  - label: P2
    server: {on: h, bind: any}
    client: {on: h, target: loopback, phase: retry}
  - label: P3
    server: {on: h, bind: any, unprivileged: true}
    client: {on: h, target: loopback}
    expect_peer: client
  - label: P4
    server: {on: h, bind: any}
    client: {on: h, target: loopback}
    expect_peer: 21
"""


def test_phases_are_part_of_the_cell_and_its_id(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    cells = expand(load_scenario(path), None)
    assert [c.id for c in cells] == ["P1[h:wildcard-from-h:loopback/server-bound]",
                                     "P2[h:wildcard-from-h:loopback/client-retry]",
                                     "P3[h:wildcard-from-h:loopback/unprivileged]",
                                     "P4[h:wildcard-from-h:loopback]"]
    assert (cells[2].unprivileged, cells[2].expect_peer, cells[3].expect_peer) == (True, "client", "21")
    assert variant_of("closed", "second-cid", True) == "/server-closed/unprivileged/client-second-cid"


def test_second_cid_goes_first_to_another_transports_cid():
    class C:
        client_phase = "second-cid"
    assert client_options(C, "21") == {"phase": "second-cid", "first_addr": "1"}
    assert client_options(C, "1") == {"phase": "second-cid", "first_addr": "0"}


def test_expect_peer_client_is_the_client_as_the_server_sees_it():
    class C:
        expect_peer = "client"
    l1 = Node(name="l1", role="host", os="linux", family="vsock", cid=2)
    l1_ns = Node(name="l1-local0", role="host", os="linux", family="vsock", cid=2, netns_of="l1")
    vm = Node(name="vm21", role="vm", os="linux", family="vsock", cid=21, parent="l1")
    assert expected_peer(C, l1, l1_ns)[0] == 1  # same machine: the loopback transport
    assert expected_peer(C, vm, l1)[0] == 2  # the host as its guest sees it
    assert expected_peer(C, l1, vm)[0] == 21  # the guest as its host sees it


def test_a_wrong_peer_fails_the_cell_even_when_the_echo_came_back():
    class Expected:
        expected, expected_errno, source = Outcome.O, None, "test"
    seen = Observation(outcome=Outcome.O, extra={"peer_check": {"seen": 1, "expected": 21, "as": "client"}})
    verdict = judge(Expected, seen)
    assert verdict.kind == "fail" and "saw peer CID 1, the cell expects 21" in verdict.message
    right = Observation(outcome=Outcome.O, extra={"peer_check": {"seen": 21, "expected": 21, "as": "client"}})
    assert judge(Expected, right).kind == "pass"
