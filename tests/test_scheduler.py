"""The cell scheduler with real threads and controllable cells: limits, claims, order, cancel.

Each fake cell blocks on its own gate until the test opens it, so what runs at once is decided
by the test, not by timing; every wait is bounded (a broken scheduler fails, never hangs).
"""
from __future__ import annotations

import threading

import pytest

from harness.cell import Cell, Driver
from harness.outcome import Observation, Outcome
from harness.scheduler import CellScheduler, Limits, claims, fixed_ports

WAIT = 30.0  # generous: a busy 2-core machine


PROBE = Driver()


def cell(n: int, server="a", client="b", port=None, driver=PROBE) -> Cell:
    return Cell(scenario="S", server_on=server, bind="any", client_on=client, target="server",
                port=40000 + n if port is None else port, label=f"S{n}", driver=driver)


class FakeCells:
    """run(cell) that records what runs at once and waits for the test to open the cell's gate."""

    def __init__(self, auto_open: bool = False, fail: set[str] = frozenset()):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.gates: dict[str, threading.Event] = {}
        self.running: set[str] = set()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.overlaps: list[frozenset[str]] = []  # every set of cells that ran at once
        self.auto_open = auto_open
        self.fail = fail

    def gate(self, label: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(label, threading.Event())

    def open(self, *labels: str) -> None:
        for label in labels:
            self.gate(label).set()

    def run(self, c: Cell) -> Observation:
        gate = self.gate(c.label)
        with self.changed:
            self.running.add(c.label)
            self.started.append(c.label)
            self.overlaps.append(frozenset(self.running))
            self.changed.notify_all()
        try:
            if c.label in self.fail:
                raise RuntimeError("boom")
            if not self.auto_open:
                assert gate.wait(WAIT), f"{c.label} never released"
            return Observation(Outcome.O if c.port % 2 else Outcome.X, detail=c.label)
        finally:
            with self.changed:
                self.running.discard(c.label)
                self.finished.append(c.label)
                self.changed.notify_all()

    def wait_running(self, *labels: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: set(labels) <= self.running, WAIT), (labels, self.running)

    def wait_started(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.started) >= count, WAIT), self.started

    def max_together(self, pred) -> int:
        return max((sum(1 for label in group if pred(label)) for group in self.overlaps), default=0)


def schedule(cells: list[Cell], fake: FakeCells, limits: Limits) -> CellScheduler:
    return CellScheduler([(c.label, c) for c in cells], fake.run, limits).start()


def drain(sched: CellScheduler, cells: list[Cell]) -> list[Observation]:
    return [sched.result(c.label) for c in cells]


def test_every_cell_runs_once_and_results_come_in_collection_order():
    cells = [cell(i, server=f"n{i % 3}", client=f"n{(i + 1) % 3}") for i in range(40)]
    fake = FakeCells(auto_open=True)
    sched = schedule(cells, fake, Limits(in_flight=4, per_node=8))
    observations = drain(sched, cells)
    assert [o.detail for o in observations] == [c.label for c in cells]
    assert [o.outcome for o in observations] == [Outcome.O if c.port % 2 else Outcome.X for c in cells]
    assert sorted(fake.started) == sorted(c.label for c in cells) and len(set(fake.started)) == len(cells)
    assert sched.cancel(WAIT)


def test_up_to_n_cells_run_at_once_while_pytest_waits_for_the_first():
    cells = [cell(i, server=f"s{i}", client=f"c{i}") for i in range(10)]
    fake = FakeCells()
    sched = schedule(cells, fake, Limits(in_flight=4))
    fake.wait_running("S0", "S1", "S2", "S3")
    assert sched.in_flight == 4 and len(fake.started) == 4  # the fifth waits for a slot
    fake.open("S2")  # a later cell ends first: the next pending one takes its slot
    fake.wait_running("S4")
    fake.open(*(c.label for c in cells))
    assert [o.detail for o in drain(sched, cells)] == [c.label for c in cells]
    assert fake.max_together(lambda label: True) == 4 == sched.peak_in_flight


def test_a_node_never_carries_more_than_per_node_cells():
    cells = [cell(i, server="vm21", client=f"c{i}") for i in range(6)] + [cell(6, server="l1", client="c6")]
    fake = FakeCells()
    sched = schedule(cells, fake, Limits(in_flight=8, per_node=2))
    fake.wait_running("S0", "S1", "S6")  # the node's slots are full; the cell on another node goes ahead
    assert "S2" not in fake.running
    fake.open(*(c.label for c in cells))
    drain(sched, cells)
    assert fake.max_together(lambda label: int(label[1:]) < 6) == 2


def test_process_starting_drivers_have_their_own_limit():
    socat, command = Driver(kind="socat"), Driver(kind="command", client="true")
    cells = [cell(0, driver=socat, server="a0"), cell(1, driver=command, server="a1"),
             cell(2, driver=socat, server="a2"), cell(3, server="a3"), cell(4, server="a4")]
    fake = FakeCells()
    sched = schedule(cells, fake, Limits(in_flight=8, spawning=2))
    fake.wait_running("S0", "S1", "S3", "S4")
    assert "S2" not in fake.running  # the third process start waits; probe cells do not
    fake.open("S0")
    fake.wait_running("S2")
    fake.open(*(c.label for c in cells))
    drain(sched, cells)
    assert fake.max_together(lambda label: label in ("S0", "S1", "S2")) == 2


def test_cells_sharing_a_port_never_overlap_and_keep_their_order():
    cells = [cell(0, server="h", port=19000), cell(1, server="v", port=19000), cell(2, server="x"),
             cell(3, server="w", port=19000)]
    fake = FakeCells()
    sched = schedule(cells, fake, Limits(in_flight=8))
    fake.wait_running("S0", "S2")
    assert fake.running == {"S0", "S2"}
    fake.open("S0")
    fake.wait_running("S1")
    assert "S3" not in fake.running
    fake.open("S1", "S2", "S3")
    drain(sched, cells)
    assert fake.max_together(lambda label: label != "S2") == 1
    assert [label for label in fake.started if label != "S2"] == ["S0", "S1", "S3"]


def test_a_command_template_with_a_fixed_port_claims_it():
    relay = Driver(kind="command", server="socat VSOCK-LISTEN:{port},reuseaddr,fork TCP:localhost:22",
                   client="sh -c 'socat -T {timeout} -u VSOCK-CONNECT:{target}:{port},readbytes=4 STDOUT | grep -q ^SSH-'")
    assert fixed_ports(relay.server) == {22}
    assert fixed_ports("ConsoleApp1.exe /server {bind}") == set()
    assert fixed_ports("sh -c 'sleep 300; ssh -o ConnectTimeout=30 h'") == {30}  # in an option's value only
    assert ("port", 22) in claims(cell(0, driver=relay, port=2222))
    # a probe cell on port 22 and the relay on its own port still never overlap: the relay binds 22
    cells = [cell(0, driver=relay, port=2222, server="g1"), cell(1, port=22, server="g2")]
    fake = FakeCells()
    sched = schedule(cells, fake, Limits(in_flight=8))
    fake.wait_running("S0")
    assert fake.running == {"S0"}
    fake.open("S0", "S1")
    drain(sched, cells)
    assert fake.max_together(lambda label: True) == 1


def test_cancel_starts_nothing_more_and_waits_for_the_cells_in_flight():
    cells = [cell(i, server=f"s{i}") for i in range(10)]
    fake = FakeCells()
    sched = schedule(cells, fake, Limits(in_flight=3))
    fake.wait_running("S0", "S1", "S2")
    fake.open("S0")
    assert sched.result("S0").detail == "S0"
    fake.wait_running("S3")
    done = []
    canceller = threading.Thread(target=lambda: done.append(sched.cancel(WAIT)))
    canceller.start()
    fake.open("S1", "S2", "S3")  # the cells in flight end by themselves (their cleanup runs)
    canceller.join(WAIT)
    assert done == [True] and sched.in_flight == 0
    assert sorted(fake.started) == ["S0", "S1", "S2", "S3"]  # nothing started after cancel
    assert sorted(fake.finished) == sorted(fake.started)  # and nothing left running
    with pytest.raises(RuntimeError):
        sched.result("S1")


def test_a_cell_pytest_never_asks_for_is_never_run_when_it_had_not_started():
    cells = [cell(i, server=f"s{i}") for i in range(6)]
    fake = FakeCells()
    sched = schedule(cells, fake, Limits(in_flight=1, window=1))
    fake.wait_running("S0")
    fake.open(*(c.label for c in cells))
    assert sched.result("S3").detail == "S3"  # S1, S2 dropped (deselected at run time)
    assert sched.result("S5").detail == "S5"  # S4 ran ahead meanwhile: its result is discarded
    with pytest.raises(KeyError):
        sched.result("S3")  # handed out once, never twice
    assert sched.cancel(WAIT)
    assert "S1" not in fake.started and "S2" not in fake.started


def test_the_window_bounds_how_far_ahead_cells_run():
    cells = [cell(i, server=f"s{i}") for i in range(20)]
    fake = FakeCells(auto_open=True)
    sched = schedule(cells, fake, Limits(in_flight=8, window=3))
    fake.wait_started(3)
    with fake.lock:
        assert sorted(fake.started) == ["S0", "S1", "S2"]  # not S3: beyond the window
    drain(sched, cells)
    assert sched.cancel(WAIT)


def test_a_cell_function_that_raises_makes_that_cell_E_and_the_run_goes_on():
    cells = [cell(i, server=f"s{i}") for i in range(3)]
    fake = FakeCells(auto_open=True, fail={"S1"})
    observations = drain(schedule(cells, fake, Limits(in_flight=2)), cells)
    assert [o.outcome for o in observations] == [Outcome.X, Outcome.E, Outcome.X]
    assert "RuntimeError: boom" in observations[1].detail


def test_limits_reject_nonsense():
    with pytest.raises(ValueError):
        Limits(in_flight=0)
    with pytest.raises(ValueError):
        CellScheduler([("k", cell(0)), ("k", cell(1))], lambda c: None)
