"""Matrix A's documented cells four at a time over psexec, against FakeHyperVLab (the fake restates
document 001's reachability: this proves the plumbing under concurrency, not the outcomes).

Four cells share each host's one pypsexec Client: their PAExec runs queue on it (PAExec's pipes are
per Client, see tests/fakes/fake_psexec.py) and a queued call is not a hung one.
"""
from __future__ import annotations

import time

from harness.agents import AgentPool
from harness.hyperv.registration import RegistrationGuard
from harness.runner import run_cell
from harness.scheduler import CellScheduler, Limits
from harness.transports import psexec
from harness.transports.psexec import clients as psexec_clients
from tests.fakes.fake_psexec import FakePsexecClient
from tests.test_hyperv_matrix_a import DOCUMENTED, documented_cells, fake_lab_inventory, lab  # noqa: F401 (fixture)


def test_four_documented_cells_in_flight_come_out_as_one_at_a_time(lab):  # noqa: F811
    inventory = fake_lab_inventory()
    cells = documented_cells(inventory)
    answer = lab.handle

    def slow(client, call):  # every PAExec round trip takes a while, as over a real network
        time.sleep(0.02)
        return answer(client, call)
    lab.handle = slow
    with AgentPool(inventory) as pool, \
            RegistrationGuard(inventory, agent_for=lambda n: pool.agent(n.name), cells=cells):
        scheduler = CellScheduler([(c.label, c) for c in cells], lambda c: run_cell(c, inventory, pool),
                                  Limits(in_flight=4, per_node=4, spawning=4)).start()
        observations = {c.label: scheduler.result(c.label) for c in cells}
        assert not any(s.broken for s in psexec.shared_clients().values())
    got = {label: obs.outcome.value for label, obs in observations.items()}
    assert got == DOCUMENTED, {k: observations[k].detail for k in got if got[k] != DOCUMENTED[k]}
    assert scheduler.peak_in_flight > 1
    assert len(FakePsexecClient.created) == 2  # one Client per host, however many cells in flight
    assert all(client.max_parallel_runs == 1 for client in FakePsexecClient.created)
    assert psexec_clients._BROKEN == {} and lab.listeners == []
