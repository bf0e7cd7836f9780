"""The pytest side end to end: real pytest runs (with xdist workers) recording cells.

Each run is a separate `python -m pytest` in a temporary folder whose test function does what
harness/session.py does per cell: get the recorder, record, annotate the item, fail on a flip.
The conftest there registers the hooks module and stands in for harness/plugin.py's options.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.results import load_run

REPO = Path(__file__).resolve().parents[1]

CONFTEST = '''
pytest_plugins = ["harness.report.pytest_hooks"]


def pytest_collection_modifyitems(items):
    # like harness/plugin.py's items, each carries its cell (the hooks keep collection order)
    for item in items:
        item.cell = item.module.cell_of(item.callspec.params["case"])

def pytest_addoption(parser):
    # stands in for harness/plugin.py, which owns these two options
    parser.addoption("--baseline", default=None)
    parser.addoption("--results-dir", default=None)
'''

TESTS = '''
import json, os, pytest
from harness.cell import Cell
from harness.outcome import Observation, Outcome
from harness.report.pytest_hooks import annotate_item, get_recorder

OBSERVED = json.loads(os.environ.get("CELLS_OBSERVED", "{}"))
CASES = [("A8", "vm", "loopback", "vm", "loopback", "O"), ("A1", "host", "wildcard", "vm", "parent", "O"),
         ("A2", "host", "wildcard", "host", "loopback", "O"), ("A7", "vm", "loopback", "host", "server", "X")]


def cell_of(case):
    label, server, bind, client, target, expected = case
    return Cell("A", server, bind, client, target, 19000, Outcome.parse(expected), label=label)

@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cell(request, case):
    if os.environ.get("RECORD_NOTHING"):
        return
    cell = cell_of(case)
    outcome = Outcome.parse(OBSERVED.get(cell.label, cell.expected.value))
    obs = Observation(outcome, errno_name="ECONNREFUSED" if outcome is Outcome.X else None,
                      errno=111 if outcome is Outcome.X else None, elapsed_ms=1.0)
    recorder = get_recorder(request.config)
    recorder.set_node_facts(cell.server_on, {"os": "linux", "kernel": "6.1.0-test", "worker": os.environ.get("PYTEST_XDIST_WORKER", "main")})
    recorder.record(cell, obs)
    annotate_item(request.node, cell, obs)
    flip = recorder.flip_of(cell.id, obs)
    assert flip is None, f"{cell.id} flipped {flip}"
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_cells.py").write_text(TESTS)
    return tmp_path


def pytest_run(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **env)
    # -p no:hvsock_matrix: when the package is pip-installed its entry point must not load twice
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hvsock_matrix",
            "-p", "no:benchmark", "--results-dir", "reports", *args]
    return subprocess.run(argv, cwd=project, env=environ, capture_output=True, text=True, timeout=300)


def properties(junit: Path) -> dict[str, dict[str, str]]:
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        out[props["cell"]] = props
    return out


def test_xdist_workers_merge_into_one_run_with_matrix_and_junit(project):
    pytest.importorskip("xdist")
    proc = pytest_run(project, "-n", "2", "--junitxml=junit.xml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = list((project / "reports" / "runs").iterdir())
    assert len(runs) == 1 and sorted(p.name for p in runs[0].iterdir()) == ["matrix.html", "matrix.md", "results.json"]
    run = load_run(runs[0] / "results.json")
    assert [c.label for c in run.cells] == ["A8", "A1", "A2", "A7"]  # collection order, not worker order
    assert run.meta["parts"] == ["gw0", "gw1"]
    assert {f["worker"] for f in run.meta["node_facts"].values()} <= {"gw0", "gw1"}
    assert "-n" in run.meta["pytest_args"]
    assert (project / "reports" / "history" / f"{run.run_id}.json").is_file()
    # the terminal matrix, O/X like the documents
    out = proc.stdout
    assert "hvsock-matrix" in out and "Scenario A" in out
    row = next(line for line in out.splitlines() if line.startswith("vm:loopback"))
    assert row.split()[1:] == ["O", ".", ".", "X"]  # columns vm:loopback vm:parent host:loopback host:server
    assert f"html: {runs[0] / 'matrix.html'}" in out
    props = properties(project / "junit.xml")
    assert props["A7[vm:loopback<-host:server]"] | {} == {
        "cell": "A7[vm:loopback<-host:server]", "expected": "X", "observed": "X",
        "summary": "X ECONNREFUSED 1ms", "errno": "ECONNREFUSED 111", "elapsed_ms": "1.0"}


def test_baseline_last_flip_fails_the_cell_and_is_listed_first(project):
    first = pytest_run(project)
    assert first.returncode == 0, first.stdout + first.stderr
    second = pytest_run(project, "--baseline", "last", "--junitxml=junit.xml",
                        CELLS_OBSERVED=json.dumps({"A2": "X", "A7": "E"}))
    assert second.returncode == 1
    assert "FAILED test_cells.py::test_cell[A2]" in second.stdout
    assert "FAILED test_cells.py::test_cell[A7]" in second.stdout
    section = second.stdout[second.stdout.index("= hvsock-matrix ="):].splitlines()[1:]
    assert section[0].startswith("Changed since baseline ") and section[0].endswith(": 2")
    assert section[1:3] == ["  * A2[host:wildcard<-host:loopback]: O -> X ECONNREFUSED (111) 1 ms (expected O)",
                            "  * A7[vm:loopback<-host:server]: X -> E 1 ms (expected X)"]
    props = properties(project / "junit.xml")
    assert props["A2[host:wildcard<-host:loopback]"]["flip"] == "O->X"
    assert props["A2[host:wildcard<-host:loopback]"]["baseline"] == "O"
    assert "flip" not in props["A1[host:wildcard<-vm:parent]"]

    diff = subprocess.run([sys.executable, "-m", "harness.cli", "diff", "previous", "last",
                           "--results-dir", str(project / "reports")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert diff.returncode == 1, diff.stderr
    lines = diff.stdout.splitlines()
    assert lines[1:4] == section[:3]  # the diff command and the terminal summary agree


def test_first_night_with_baseline_last_warns_and_runs(project):
    proc = pytest_run(project, "--baseline", "last")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--baseline last:" in proc.stdout and "running without a baseline" in proc.stdout


def test_missing_baseline_file_is_one_line(project):
    proc = pytest_run(project, "--baseline", "nightly/nope.json")
    assert proc.returncode == 4
    errors = [line for line in proc.stderr.splitlines() if "nope.json" in line]
    assert errors == ["ERROR: --baseline: nightly/nope.json: no such results file or run id "
                      "(looked in reports/history)"] or (len(errors) == 1 and "Traceback" not in proc.stderr), proc.stderr


def test_a_run_without_cells_writes_nothing(project):
    proc = pytest_run(project, RECORD_NOTHING="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (project / "reports").exists()
    assert "hvsock-matrix" not in proc.stdout


def test_pytest_html_report_embeds_the_matrix(project):
    pytest.importorskip("pytest_html", reason="pytest-html is not installed (optional integration)")
    proc = pytest_run(project, "--html=report.html", "--self-contained-html")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (project / "report.html").read_text(encoding="utf-8")
    assert 'class="hvsock-matrix"' in page and "srcdoc=" in page and "Scenario A" in page
