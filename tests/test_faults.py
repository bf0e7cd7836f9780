"""Faults on the network-namespace lab: whatever breaks, its cells are E, the rest still finish,
and nothing is left behind on any node.
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import time

import pytest

from harness.agents import AgentPool
from harness.cell import Cell, Driver
from harness.node import Inventory
from harness.outcome import Outcome
from harness.runner import run_cell

pytestmark = pytest.mark.netns


def cell(server_on, bind, client_on, target, port, **kw) -> Cell:
    return Cell(scenario="F", server_on=server_on, bind=bind, client_on=client_on, target=target, port=port,
                timeout=kw.pop("timeout", 3), **kw)


@pytest.fixture
def inv(netns_lab):
    return netns_lab.inventory()


def with_connect_timeout(inv: Inventory, seconds: float) -> Inventory:
    nodes = {k: dataclasses.replace(n, access=dataclasses.replace(n.access, connect_timeout=seconds))
             for k, n in inv.nodes.items()}
    return Inventory(name=inv.name, path=inv.path + f"#ct{seconds}", nodes=nodes)


def probe_session_pid(netns_lab, n: str) -> int:
    found = [int(p.split()[0]) for p in netns_lab.processes(n) if re.search(r"probe\.pyz? session", p)]
    assert len(found) == 1, netns_lab.processes(n)
    return found[0]


@pytest.mark.parametrize("victim, lost", [("b", {"nsb"}), ("a", {"nsa", "nsc"})],
                         ids=["plain-node", "jump-host"])
def test_node_whose_sshd_stops_mid_run_turns_its_cells_E_and_the_others_finish(netns_lab, inv, victim, lost):
    pool = AgentPool(inv)
    pairs = [("nsa", "nsb"), ("nsb", "nsc"), ("nsc", "nsa"), ("nsb", "nsb"), ("nsc", "nsc"), ("nsa", "nsa")]
    try:
        before = [run_cell(cell(s, "wildcard", c, "server", 25000 + i), inv, pool) for i, (s, c) in enumerate(pairs)]
        assert all(o.outcome is Outcome.O for o in before), [o.detail for o in before]
        netns_lab.stop_sshd(victim)  # its sshd, its connections and the probe sessions under them
        after = {}
        for i, (s, c) in enumerate(pairs):
            start = time.monotonic()
            after[(s, c)] = (run_cell(cell(s, "wildcard", c, "server", 25100 + i), inv, pool),
                             time.monotonic() - start)
        for (s, c), (obs, took) in after.items():
            if {s, c} & lost:
                assert obs.outcome is Outcome.E, (s, c, obs.summary())
                assert any(name in obs.detail for name in lost), obs.detail
                assert "\n" not in obs.detail
            else:
                assert obs.outcome is Outcome.O, (s, c, obs.detail)
            assert took < 30, (s, c, took)
    finally:
        pool.close()
        netns_lab.start_sshd(victim)
    netns_lab.assert_clean()


def test_client_command_that_hangs_is_cut_at_its_timeout_and_killed(netns_lab, inv):
    fast = with_connect_timeout(inv, 2)  # a process start on these nodes: 5 s at most (start_margin)
    pool = AgentPool(fast)
    try:
        start = time.monotonic()
        obs = run_cell(cell("nsa", "wildcard", "nsb", "server", 25201, timeout=2,
                            driver=Driver(kind="command", client="sleep 120")), fast, pool)
        took = time.monotonic() - start
        assert obs.outcome is Outcome.E and "cut at its timeout (7s)" in obs.detail  # 2 s + 5 s to start
        assert took < 15
        assert not [p for p in netns_lab.processes("b") if "sleep 120" in p]
    finally:
        pool.close()
    netns_lab.assert_clean()


def test_server_command_that_never_listens_is_E_not_X(netns_lab, inv):
    fast = with_connect_timeout(inv, 2)
    pool = AgentPool(fast)
    try:
        start = time.monotonic()
        obs = run_cell(cell("nsa", "wildcard", "nsb", "server", 25202, timeout=1,
                            driver=Driver(kind="command", server="sleep 120", client="true")), fast, pool)
        assert obs.outcome is Outcome.E and "not ready in time" in obs.detail
        assert time.monotonic() - start < 15
        assert not [p for p in netns_lab.processes("a") if "sleep 120" in p]
    finally:
        pool.close()
    netns_lab.assert_clean()


def test_a_frozen_probe_session_is_cut_and_replaced(netns_lab, inv):
    pool = AgentPool(inv, margin=1.0)
    try:
        assert run_cell(cell("nsa", "wildcard", "nsb", "server", 25301), inv, pool).outcome is Outcome.O
        frozen = probe_session_pid(netns_lab, "b")
        os.kill(frozen, signal.SIGSTOP)  # a process of ours, inside our namespace
        start = time.monotonic()
        obs = run_cell(cell("nsa", "wildcard", "nsb", "server", 25302, timeout=1), inv, pool)
        assert obs.outcome is Outcome.E and "no answer to connect" in obs.detail
        assert time.monotonic() - start < 10
        again = run_cell(cell("nsa", "wildcard", "nsb", "server", 25303), inv, pool)
        assert again.outcome is Outcome.O, again.detail
        assert pool.agent("nsb").starts == 2
        assert frozen not in netns_lab.pids("b")  # the frozen one was killed, not abandoned
    finally:
        pool.close()
    netns_lab.assert_clean()


def test_a_crashed_probe_session_is_restarted_for_the_next_cell(netns_lab, inv):
    pool = AgentPool(inv)
    try:
        assert run_cell(cell("nsc", "wildcard", "nsa", "server", 25401), inv, pool).outcome is Outcome.O
        os.kill(probe_session_pid(netns_lab, "c"), signal.SIGKILL)
        obs = run_cell(cell("nsc", "wildcard", "nsa", "server", 25402), inv, pool)
        assert obs.outcome is Outcome.O, obs.detail
        assert pool.agent("nsc").starts == 2
    finally:
        pool.close()
    netns_lab.assert_clean()


def test_pool_close_leaves_no_probe_even_with_listeners_open(netns_lab, inv):
    pool = AgentPool(inv)
    try:
        agent = pool.agent("nsa")
        ev = agent.listen("tcp", "0.0.0.0", 25501, None, timeout=300, count=5)
        assert ev["event"] == "listening"
        assert [line for line in netns_lab.leftovers("a") if "25501" in line]
    finally:
        pool.close()
    netns_lab.assert_clean()
