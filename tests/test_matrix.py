"""Matrix layout: rows = server node:bind, columns = client node:target, marks and history strips."""
from __future__ import annotations

from harness.cell import Cell, Driver
from harness.matrix import build_report
from harness.outcome import Observation, Outcome
from harness.results import CellResult, Run


def result(scenario, server, bind, client, target, expected, observed, label=None, driver="probe",
           baseline=None):
    c = Cell(scenario, server, bind, client, target, 19000, expected, label=label, driver=Driver(driver))
    return CellResult.from_cell(c, Observation(observed), baseline=baseline)


def doc_a_run(run_id="r2", a7=Outcome.X):
    """Document 001's A cells (a subset) plus a C cell, in scenario order."""
    cells = [
        result("A", "host", "wildcard", "vm", "parent", Outcome.O, Outcome.O, "A1"),
        result("A", "host", "wildcard", "host", "loopback", Outcome.O, Outcome.O, "A2"),
        result("A", "vm", "wildcard", "host", "server", Outcome.O, Outcome.O, "A3"),
        result("A", "vm", "loopback", "host", "server", Outcome.X, a7, "A7"),
        result("A", "vm", "loopback", "vm", "loopback", Outcome.O, Outcome.O, "A8"),
        result("C", "guest", "wildcard", "host", "server", Outcome.O, Outcome.O, "C1"),
        result("C", "guest", "wildcard", "host", "server", Outcome.O, Outcome.X, "C1", driver="socat"),
        result("A", "vm", "children", "vm", "broadcast", None, Outcome.NA),
    ]
    return Run(run_id, {}, cells)


def test_one_matrix_per_scenario_in_first_seen_order():
    report = build_report(doc_a_run())
    assert [m.scenario for m in report.matrices] == ["A", "C"]
    a, c = report.matrices
    assert a.rows == ["host:wildcard", "vm:wildcard", "vm:loopback", "vm:children"]
    assert a.columns == ["vm:parent", "host:loopback", "host:server", "vm:loopback", "vm:broadcast"]
    assert [x.id for x in a.at("vm:loopback", "host:server")] == ["A7[vm:loopback-from-host:server]"]
    assert a.at("host:wildcard", "host:server") == []
    assert c.columns == ["host:server", "host:server@socat"]
    assert sum(1 for _ in a.cells()) == 6


def test_mismatch_needs_a_known_expectation():
    report = build_report(doc_a_run(a7=Outcome.O))
    assert [x.id for x in report.mismatches] == ["A7[vm:loopback-from-host:server]", "C1[guest:wildcard-from-host:server+socat]"]
    unknown = report.matrices[0].at("vm:children", "vm:broadcast")[0]
    assert unknown.expected is None and not unknown.mismatch


def test_flips_against_an_explicit_baseline_run_and_history_strip():
    older = doc_a_run("r0")
    baseline = doc_a_run("r1")
    now = doc_a_run("r2", a7=Outcome.O)
    report = build_report(now, baseline=baseline, history=[older, baseline])
    assert [(x.id, x.flip) for x in report.flips] == [("A7[vm:loopback-from-host:server]", "X->O")]
    a7 = report.cell("A7[vm:loopback-from-host:server]")
    assert a7.history == [Outcome.X, Outcome.X] and a7.baseline.outcome is Outcome.X
    assert report.baseline_label == "r1"


def test_stored_baseline_used_when_none_given_and_absent_history_is_none():
    cells = [result("B", "win-host", "wildcard", "linux-vm", "parent", Outcome.O, Outcome.E, "B1",
                    baseline=Observation(Outcome.O))]
    report = build_report(Run("r9", {"baseline": {"run_id": "r8"}}, cells), history=[Run("r7", {}, [])])
    (b1,) = report.flips
    assert b1.flip == "O->E" and b1.history == [None]
    assert report.baseline_label == "r8"
