"""The pytest side end to end: real pytest runs (with and without xdist) of real loopback cells
(tests/loopback_project.py), their results travelling with pytest's reports to one recorder.
"""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.results import load_run
from tests.loopback_project import REPO, make_project, run_pytest

L2 = "L2[lo2:self-from-lo1:node:lo1]"
L3 = "L3[lo1:loopback-from-lo1:loopback]"


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def the_run(project: Path):
    runs = list((project / "reports" / "runs").iterdir())
    assert len(runs) == 1
    return runs[0], load_run(runs[0] / "results.json")


def junit_cases(junit: Path) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}


def properties(case: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in case.iter("property")}


def test_xdist_workers_results_reach_one_run_with_matrix_and_junit(project):
    proc = run_pytest(project, "-n", "2", "--junitxml=junit.xml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder, run = the_run(project)
    assert sorted(p.name for p in folder.iterdir()) == ["matrix.html", "matrix.md", "results.json"]
    assert [c.label for c in run.cells] == ["L1", "L2", "L3", "L4"]  # collection order, not worker order
    assert {c.label: c.observation.outcome.value for c in run.cells} == {"L1": "O", "L2": "X", "L3": "O", "L4": "O"}
    assert set(run.meta["workers"]) <= {"gw0", "gw1"} and run.meta["workers"]
    assert set(run.meta["node_facts"]) == {"lo1", "lo2"}
    assert run.meta["inventory"]["name"] == "loopback"
    assert "-n" in run.meta["pytest_args"]
    assert (project / "reports" / "history" / f"{run.run_id}.json").is_file()
    out = proc.stdout
    assert "4 passed" in out and "= hvsock-matrix =" in out and "Scenario L" in out
    assert f"html: {folder / 'matrix.html'}" in out
    props = properties(junit_cases(project / "junit.xml")[L2])
    assert {k: props[k] for k in ("cell", "expected", "observed", "errno")} == {
        "cell": L2, "expected": "X", "observed": "X", "errno": "ECONNREFUSED 111"}


def test_baseline_last_flip_fails_the_cell_and_is_listed_first(project):
    first = run_pytest(project)
    assert first.returncode == 0, first.stdout + first.stderr
    # last night L3 was X: edit the baseline (a results file is plain JSON)
    _, run = the_run(project)
    history = project / "reports" / "history" / f"{run.run_id}.json"
    data = json.loads(history.read_text())
    for cell in data["cells"]:
        if cell["label"] == "L3":
            cell["observation"].update(outcome="X", errno_name="ECONNREFUSED", errno=111)
    history.write_text(json.dumps(data))

    second = run_pytest(project, "--baseline", "last", "--junitxml=junit.xml")
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"FAILED scenarios/loopback.yaml::{L3}" in second.stdout
    assert "flipped since baseline (X->O): observed O" in second.stdout
    assert "3 passed" in second.stdout
    section = second.stdout[second.stdout.index("= hvsock-matrix ="):].splitlines()[1:]
    assert section[0].startswith("Changed since baseline ") and section[0].endswith(": 1")
    assert section[1].startswith(f"  * {L3}: X -> O")
    props = properties(junit_cases(project / "junit.xml")[L3])
    assert (props["baseline"], props["flip"]) == ("X", "X->O")

    diff = subprocess.run([sys.executable, "-m", "harness.cli", "diff", "previous", "last",
                           "--results-dir", str(project / "reports")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert diff.returncode == 1, diff.stderr
    assert diff.stdout.splitlines()[1:3] == section[:2]  # the diff command and the terminal summary agree


def test_first_night_with_baseline_last_warns_and_runs(project):
    proc = run_pytest(project, "--baseline", "last", "-k", "L3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--baseline last:" in proc.stdout and "running without a baseline" in proc.stdout


def test_missing_baseline_file_is_one_line(project):
    proc = run_pytest(project, "--baseline", "nightly/nope.json")
    assert proc.returncode == 4
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "nope.json" in line]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("ERROR: --baseline: nightly/nope.json: no such results file or run id (looked in ")


def test_a_run_without_cells_writes_nothing(project):
    (project / "test_plain.py").write_text("def test_nothing():\n    pass\n")
    proc = run_pytest(project, "test_plain.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert not (project / "reports").exists()
    assert "= hvsock-matrix =" not in proc.stdout


def test_a_run_whose_results_cannot_be_written_exits_non_zero(project):
    (project / "blocker").write_text("a file where the results folder should be\n")
    proc = run_pytest(project, "-k", "L3", "--results-dir", "blocker/reports")
    assert "1 passed" in proc.stdout
    assert proc.returncode == pytest.ExitCode.INTERNAL_ERROR, proc.stdout + proc.stderr
    assert "hvsock-matrix: could not write the results:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_pytest_html_report_embeds_the_matrix(project):
    pytest.importorskip("pytest_html", reason="pytest-html is not installed (optional integration)")
    proc = run_pytest(project, "--html=report.html", "--self-contained-html")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (project / "report.html").read_text(encoding="utf-8")
    assert 'class="hvsock-matrix"' in page and "srcdoc=" in page and "Scenario L" in page
