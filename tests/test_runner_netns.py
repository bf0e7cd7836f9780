"""run_cell over the network-namespace lab: real O and X with errno and times, B, n/a, and the
scenario file run end to end through pytest. Every test leaves no probe or listener behind.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.agents import AgentPool, OneShotAgent, SessionAgent
from harness.cell import Cell, Driver
from harness.outcome import Outcome
from harness.runner import run_cell
from harness.scenario import load_cells

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "tcp-netns.yaml"


@pytest.fixture
def inv(netns_lab):
    return netns_lab.inventory()


@pytest.fixture
def pool(netns_lab, inv):
    p = AgentPool(inv)
    yield p
    p.close()
    netns_lab.assert_clean()


def cell(server_on, bind, client_on, target, port, **kw) -> Cell:
    return Cell(scenario="R", server_on=server_on, bind=bind, client_on=client_on, target=target, port=port,
                timeout=kw.pop("timeout", 5), **kw)


def test_wildcard_server_answers_a_peer_with_the_exact_echo(inv, pool):
    obs = run_cell(cell("nsa", "wildcard", "nsb", "server", 24001), inv, pool)
    assert obs.outcome is Outcome.O, obs.detail
    assert obs.reply == "Hello: World!"
    assert obs.elapsed_ms is not None and obs.duration_ms >= obs.elapsed_ms
    assert obs.server_address == "INADDR_ANY 0.0.0.0"
    assert obs.client_address.endswith(inv.node("nsa").address)
    assert obs.extra["server_accepted"] == 1
    assert obs.extra["server_peers"][0].startswith(inv.node("nsb").address + ":")
    assert [c.split(":", 1)[0] for c in obs.commands] == ["nsa", "nsb", "nsa"]
    assert '"op": "listen"' in obs.commands[0] and '"op": "connect"' in obs.commands[1]


def test_loopback_bound_server_is_X_econnrefused_from_a_peer(inv, pool):
    obs = run_cell(cell("nsa", "loopback", "nsb", "server", 24002), inv, pool)
    assert (obs.outcome, obs.errno_name, obs.errno) == (Outcome.X, "ECONNREFUSED", 111)
    assert obs.elapsed_ms is not None and obs.elapsed_ms < 5000
    assert obs.summary().startswith("X ECONNREFUSED")
    assert obs.extra["server_accepted"] == 0


def test_same_node_loopback_is_O_and_through_the_jump_host_too(inv, pool):
    assert run_cell(cell("nsc", "loopback", "nsc", "loopback", 24003), inv, pool).outcome is Outcome.O
    assert run_cell(cell("nsc", "self", "nsa", "server", 24004), inv, pool).outcome is Outcome.O


def test_binding_another_nodes_address_is_B_eaddrnotavail(inv, pool):
    obs = run_cell(cell("nsb", "node:nsa", "nsb", "server", 24005), inv, pool)
    assert (obs.outcome, obs.bind_errno_name) == (Outcome.B, "EADDRNOTAVAIL")
    assert len(obs.commands) == 1  # no client ran


def test_tokens_without_meaning_in_tcp_are_na_and_touch_no_node(inv, netns_lab):
    class NoNodes(AgentPool):
        def agent(self, name):
            raise AssertionError("an n/a cell must not reach a node")

    p = NoNodes(inv)
    for bind, target in (("children", "server"), ("wildcard", "broadcast"), ("parent", "server")):
        obs = run_cell(cell("nsa", bind, "nsb", target, 24006), inv, p)
        assert obs.outcome is Outcome.NA and obs.detail
    assert run_cell(cell("nsa", "wildcard", "nowhere", "server", 24006), inv, p).outcome is Outcome.NA


def test_session_agent_runs_many_cells_on_one_process_per_node(inv, pool):
    for i in range(8):
        run_cell(cell("nsa", "wildcard", "nsb", "server", 24100 + i), inv, pool)
    a, b = pool.agent("nsa"), pool.agent("nsb")
    assert isinstance(a, SessionAgent) and (a.starts, b.starts) == (1, 1)
    assert pool.transport("nsa").connects == 1


def test_oneshot_agents_give_the_same_outcomes(netns_lab, inv):
    p = AgentPool(inv, mode="oneshot")
    try:
        assert isinstance(p.agent("nsa"), OneShotAgent)
        o = run_cell(cell("nsa", "wildcard", "nsc", "server", 24201), inv, p)
        x = run_cell(cell("nsa", "loopback", "nsc", "server", 24202), inv, p)
        b = run_cell(cell("nsb", "node:nsa", "nsb", "server", 24203), inv, p)
        assert (o.outcome, x.outcome, x.errno_name, b.outcome) == (Outcome.O, Outcome.X, "ECONNREFUSED", Outcome.B)
        assert "probe.pyz serve" in o.commands[0] and "probe.pyz connect" in o.commands[1]
    finally:
        p.close()
    netns_lab.assert_clean()


def test_socat_driver_gives_real_O_and_X_over_tcp(inv, pool):
    o = run_cell(cell("nsa", "wildcard", "nsb", "server", 24301, driver=Driver(kind="socat")), inv, pool)
    assert o.outcome is Outcome.O and o.reply == "Hello: World!", o.detail
    assert "TCP4-LISTEN:24301" in o.commands[0] and "TCP4:" in o.commands[1]
    x = run_cell(cell("nsa", "loopback", "nsb", "server", 24302, driver=Driver(kind="socat")), inv, pool)
    assert (x.outcome, x.errno_name) == (Outcome.X, "ECONNREFUSED")
    b = run_cell(cell("nsb", "node:nsa", "nsb", "server", 24303, driver=Driver(kind="socat")), inv, pool)
    assert (b.outcome, b.bind_errno_name) == (Outcome.B, "EADDRNOTAVAIL")


def test_command_driver_with_a_silent_server_is_awaited_with_ss(inv, pool):
    d = Driver(kind="command", server="socat TCP4-LISTEN:{port},bind={bind} SYSTEM:cat",
               client="socat -T 3 - TCP4:{target}:{port}")
    obs = run_cell(cell("nsa", "wildcard", "nsb", "server", 24401, driver=d), inv, pool)
    assert obs.outcome is Outcome.O, obs.detail  # exit 0; the template does not send {payload}
    assert obs.duration_ms < 5000
    x = run_cell(cell("nsa", "loopback", "nsb", "server", 24402, driver=d), inv, pool)
    assert (x.outcome, x.errno_name) == (Outcome.X, "ECONNREFUSED")


def test_command_driver_requires_the_echo_when_it_sends_the_payload(inv, pool):
    d = Driver(kind="command", client="sh -c 'printf Bye:%s {payload}'")
    assert run_cell(cell("nsa", "wildcard", "nsb", "server", 24403, driver=d), inv, pool).outcome is Outcome.E
    d = Driver(kind="command", client="sh -c 'printf \"Hello: %s\" {payload}'")
    assert run_cell(cell("nsa", "wildcard", "nsb", "server", 24404, driver=d), inv, pool).outcome is Outcome.O


def test_every_cell_of_the_tcp_scenario_matches_its_expectation(netns_lab, inv, pool):
    cells = load_cells(SCENARIO, inv)
    assert len(cells) >= 36 and not any(c.skip_reason for c in cells)
    observed = {c.id: run_cell(c, inv, pool) for c in cells}
    assert not [k for k, o in observed.items() if o.outcome is Outcome.E], \
        {k: o.detail for k, o in observed.items() if o.outcome is Outcome.E}
    wrong = {c.id: observed[c.id].summary() for c in cells
             if c.expected is not None and observed[c.id].outcome is not c.expected}
    assert not wrong
    outcomes = {o.outcome for o in observed.values()}
    assert {Outcome.O, Outcome.X} <= outcomes
    assert all(o.errno_name == "ECONNREFUSED" for o in observed.values() if o.outcome is Outcome.X)


def test_pytest_runs_the_scenario_against_the_lab_inventory(netns_lab, tmp_path):
    """The issue's "done when": pytest scenarios/<tcp scenario> --inventory <netns lab>."""
    proc = subprocess.run([sys.executable, "-m", "pytest", str(SCENARIO), "--inventory", netns_lab.inventory_path,
                           "--results-dir", str(tmp_path), "-p", "no:cacheprovider", "-q", "-rA"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out[-3000:]
    assert "38 passed" in out
    # progress reaches the terminal while the cell runs, not in the captured output after it
    names = ", ".join(sorted(netns_lab.inventory().nodes))
    assert f"[run] starting the probe on {names} at once" in out
    assert out.index("[run] probes ready in") < out.index("short test summary info")
    assert "X" in out and "ECONNREFUSED" in (tmp_path / "runs").glob("*/results.json").__next__().read_text()
    netns_lab.assert_clean()


def test_netns_lab_cli_up_and_down_leave_nothing(tmp_path):
    """`python3 -m tests.netns_lab up|down`: the by-hand lab for `pytest scenarios/tcp-netns.yaml`."""
    from tests.netns_lab import NetnsLab, skip_reason
    if skip_reason():
        pytest.skip(skip_reason())
    d = tmp_path / "lab"
    up = subprocess.run([sys.executable, "-m", "tests.netns_lab", "up", "--dir", str(d)], cwd=ROOT,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    lab = NetnsLab.load(str(d)) if (d / "state.json").exists() else None
    try:
        assert up.returncode == 0, up.stdout.decode()
        assert (d / "inventory.yaml").exists()
        assert set(lab.inventory().nodes) == {"nsa", "nsb", "nsc"}
        again = subprocess.run([sys.executable, "-m", "tests.netns_lab", "up", "--dir", str(d)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert again.returncode == 2 and b"already up" in again.stdout
    finally:
        down = subprocess.run([sys.executable, "-m", "tests.netns_lab", "down", "--dir", str(d)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert down.returncode == 0
    namespaces = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE).stdout.decode()
    assert f"hvm-{lab.suffix}-" not in namespaces
    assert subprocess.run(["ip", "link", "show", lab.root_link], capture_output=True).returncode != 0
    from tests.netns_lab import _zombie
    # gone, or a zombie waiting for init to reap it (the `up` process that started it has exited)
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in lab.sshd_pids.values())
    assert not d.exists()
