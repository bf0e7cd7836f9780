"""Socket types as a cell dimension (issue 14), on this machine's real kernel.

AF_VSOCK never opens here (the controller's /dev/vsock is the infrastructure's), so the probe's
type handling is exercised over tcp on 127.0.0.1 -- where the kernel gives a real answer to every
type: stream works, dgram is UDP, seqpacket is refused by socket() -- and the message-boundary
check over AF_UNIX socket pairs, the one place here with a real SOCK_SEQPACKET. The vsock answers
themselves are measured on the qemu lab (scenarios/linux-kvm*.yaml).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness.agents import AgentPool
from harness.cell import Cell, Driver
from harness.drivers import command
from harness.node import Access, Inventory, Node
from harness.outcome import Outcome
from harness.probe import client as probe_client
from harness.probe import common, sockets
from harness.probe import listener as probe_listener
from harness.runner import plan_cell, run_cell
from tests.test_probe import CLEAN_ENV, PROBE, PYTHONS, free_port


def kernel_answer(kind: int) -> str | None:
    """What this kernel says to socket(AF_INET, kind): None when it makes one."""
    try:
        socket.socket(socket.AF_INET, kind).close()
        return None
    except OSError as exc:
        return common.errno_name(exc.errno)


def probe_json(python: str, *args: str, timeout: float = 30) -> list[dict]:
    out = subprocess.run([python, PROBE, *args], capture_output=True, timeout=timeout, env=CLEAN_ENV)
    return [json.loads(line) for line in out.stdout.decode().splitlines()]


@pytest.mark.parametrize("python", PYTHONS)
def test_dgram_serve_and_connect_echo_a_real_datagram(python):
    port = free_port()
    server = subprocess.Popen([python, PROBE, "serve", "--family", "tcp", "--addr", "127.0.0.1", "--port", str(port),
                               "--socket", "dgram", "--timeout", "20"], stdout=subprocess.PIPE, env=CLEAN_ENV)
    try:
        ready = json.loads(server.stdout.readline())
        assert (ready["event"], ready["socket"]) == ("listening", "dgram")
        [result] = probe_json(python, "connect", "--family", "tcp", "--addr", "127.0.0.1", "--port", str(port),
                              "--socket", "dgram", "--payload", "dg")
        assert (result["outcome"], result["reply"], result["socket"]) == ("O", "Hello: dg", "dgram")
        assert json.loads(server.stdout.readline())["received"] == "dg"
    finally:
        server.kill()
        server.wait(10)


def test_a_datagram_nobody_answers_is_X_with_the_kernels_errno_at_reply():
    port = free_port()  # nothing bound: loopback UDP answers with ICMP port unreachable
    result = probe_client.connect_once("tcp", "127.0.0.1", port, payload="dg", timeout=5, kind="dgram")
    assert (result["outcome"], result["phase"], result["errno_name"]) == ("X", "reply", "ECONNREFUSED")


@pytest.mark.parametrize("python", PYTHONS)
def test_a_type_the_kernel_refuses_is_B_on_the_server_and_X_on_the_client_at_socket(python):
    refused = kernel_answer(socket.SOCK_SEQPACKET)  # Linux tcp/IPv4 has no seqpacket without SCTP
    if refused is None:
        pytest.skip("this kernel makes AF_INET SOCK_SEQPACKET sockets (sctp loaded)")
    port = free_port()
    [bind] = probe_json(python, "serve", "--family", "tcp", "--addr", "127.0.0.1", "--port", str(port),
                        "--socket", "seqpacket", "--timeout", "5")
    assert (bind["event"], bind["phase"], bind["errno_name"]) == ("bind_failed", "socket", refused)
    [result] = probe_json(python, "connect", "--family", "tcp", "--addr", "127.0.0.1", "--port", str(port),
                          "--socket", "seqpacket", "--payload", "x")
    assert (result["outcome"], result["phase"], result["errno_name"]) == ("X", "socket", refused)


def test_stream_socket_failure_stays_E_not_X(monkeypatch):
    """A stream socket() failing is the node's or harness's trouble, never a connect result."""
    def broken(*args, **kwargs):
        raise OSError(97, "Address family not supported by protocol")
    monkeypatch.setattr(sockets.socket, "socket", broken)
    result = probe_client.connect_once("tcp", "127.0.0.1", 1, payload="x")
    assert (result["outcome"], result["phase"]) == ("E", "socket")


def _serve_pair(kind: int, timeout: float) -> dict:
    """The probe's listener answering one end of a real AF_UNIX pair, its client on the other."""
    client, server = socket.socketpair(socket.AF_UNIX, kind)
    listener = probe_listener.Listener("tcp", "127.0.0.1", 1, kind="seqpacket")
    answer = threading.Thread(target=listener.answer, args=(server, "pair", time.monotonic() + timeout))
    answer.start()
    try:
        return probe_client.exchange_messages(client, "msg", timeout)
    finally:
        answer.join(timeout + 5)
        client.close()


def test_seqpacket_keeps_two_messages_apart():
    out = _serve_pair(socket.SOCK_SEQPACKET, 5)
    assert out["outcome"] == "O" and out["messages"] == ["Hello: msg"] * sockets.SEQPACKET_MESSAGES


def test_merged_messages_are_caught_as_E_naming_the_boundary():
    """A byte stream under a 'seqpacket' cell merges the two sends: never O.

    The stream end reads both sends as one (MSG_WAITALL: deterministic on a busy machine) and
    echoes them as one, as any stream server would once the bytes had run together.
    """
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def merged_echo():
        data = server.recv(len("msg") * sockets.SEQPACKET_MESSAGES, socket.MSG_WAITALL)
        server.sendall(common.REPLY_PREFIX.encode() + data)

    echo = threading.Thread(target=merged_echo)
    echo.start()
    try:
        out = probe_client.exchange_messages(client, "msg", 2)
    finally:
        echo.join(10)
        client.close()
        server.close()
    assert out["outcome"] == "E" and "message boundaries not kept" in out["message"]
    assert out["messages"] == ["Hello: msgmsg"]


def test_session_requests_carry_the_socket_type(tmp_path):
    proc = subprocess.Popen([sys.executable, PROBE, "session", "--idle-timeout", "30"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=CLEAN_ENV, text=True)
    try:
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        port = free_port()
        proc.stdin.write(json.dumps({"id": 1, "op": "listen", "family": "tcp", "addr": "127.0.0.1", "port": port,
                                     "socket": "dgram", "timeout": 20}) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["event"] == "listening"
        proc.stdin.write(json.dumps({"id": 2, "op": "connect", "family": "tcp", "addr": "127.0.0.1", "port": port,
                                     "socket": "dgram", "payload": "s"}) + "\n")
        proc.stdin.flush()
        answers = {}
        while 2 not in answers:
            msg = json.loads(proc.stdout.readline())
            answers[msg.get("id")] = msg
        assert (answers[2]["outcome"], answers[2]["reply"]) == ("O", "Hello: s")
    finally:
        proc.kill()
        proc.wait(10)


# -- through the runner: real cells on 127.0.0.1 ----------------------------------------------
def local_inventory() -> Inventory:
    node = Node(name="ctl", role="host", os="linux", family="tcp", address="127.0.0.1", access=Access(kind="local"))
    return Inventory(name="local", path="<local>", nodes={"ctl": node})


PROBE_DRIVER = Driver()


def local_cell(socket_type: str, driver: Driver = PROBE_DRIVER) -> Cell:
    return Cell(scenario="S", server_on="ctl", bind="loopback", client_on="ctl", target="loopback",
                port=free_port(), timeout=5, socket=socket_type, driver=driver)


@pytest.fixture
def pool():
    p = AgentPool(local_inventory())
    yield p
    p.close()


def test_runner_records_a_refused_type_as_B_with_errno_and_phase(pool):
    refused = kernel_answer(socket.SOCK_SEQPACKET)
    if refused is None:
        pytest.skip("this kernel makes AF_INET SOCK_SEQPACKET sockets")
    obs = run_cell(local_cell("seqpacket"), pool.inventory, pool)
    assert (obs.outcome, obs.bind_errno_name, obs.extra.get("phase")) == (Outcome.B, refused, "socket")
    assert "seqpacket socket()" in obs.detail


def test_runner_dgram_cell_is_O_with_time(pool):
    obs = run_cell(local_cell("dgram"), pool.inventory, pool)
    assert obs.outcome is Outcome.O and obs.elapsed_ms is not None and obs.extra["server_accepted"] == 1


def test_socat_is_a_stream_driver_non_stream_cells_are_na(pool):
    obs = run_cell(local_cell("dgram", Driver(kind="socat")), pool.inventory, pool)
    assert obs.outcome is Outcome.NA and "stream sockets" in obs.detail and obs.commands == []


def test_command_templates_get_the_socket_type():
    plan = plan_cell(local_cell("seqpacket", Driver(kind="command", client="tool --type {socket}")), local_inventory())
    argv = command.render("tool --type {socket} {target}:{port}", command.values_for(plan, "client"))
    assert argv == ["tool", "--type", "seqpacket", "127.0.0.1:" + str(plan.cell.port)]
