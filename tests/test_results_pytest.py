"""The pytest side end to end: real pytest runs (with and without xdist) of real loopback cells
(tests/loopback_project.py), their results travelling with pytest's reports to one recorder.
"""
from __future__ import annotations

import json
import re
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
    assert sorted(p.name for p in folder.iterdir()) == ["history.html", "matrix.html", "matrix.md", "results.json"]
    assert 'href="history.html"' in (folder / "matrix.html").read_text()  # the nightly page links the history
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


def test_e_is_an_error_na_a_skip_and_a_mismatch_a_failure_in_pytest_and_junit(tmp_path):
    project = make_project(tmp_path, outcomes=True)
    proc = run_pytest(project, "scenarios/outcomes.yaml", "-rA", "--junitxml=junit.xml")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "1 failed, 1 skipped, 1 error" in out
    assert "ERROR at setup of L5[gone:wildcard-from-lo1:server]" in out and "Traceback" not in out
    assert "\nE (harness or lab failure, not counted as X): server: node gone: cannot connect to " in out
    assert "SKIPPED [1] scenarios/outcomes.yaml:10: n/a: bind children on lo1: tcp has no equivalent" in out
    cases = junit_cases(project / "junit.xml")
    assert [child.tag for child in cases["L5[gone:wildcard-from-lo1:server]"] if child.tag != "properties"] == ["error"]
    assert [child.tag for child in cases["L6[lo1:children-from-lo2:server]"] if child.tag != "properties"] == ["skipped"]
    assert [child.tag for child in cases["L7[lo2:loopback-from-lo1:server]"] if child.tag != "properties"] == ["failure"]
    _, run = the_run(project)
    assert {c.label: c.observation.outcome.value for c in run.cells} == {"L5": "E", "L6": "n/a", "L7": "X"}
    assert run.cell("L5[gone:wildcard-from-lo1:server]").observation.detail.startswith("server: node gone:")

    alone = run_pytest(project, "-k", "L5[gone:wildcard-from-lo1:server]", "--junitxml=alone.xml")
    assert alone.returncode == 1 and alone.stdout.rstrip().splitlines()[-1].startswith("=") \
        and " 1 error in " in alone.stdout.splitlines()[-1] and "passed" not in alone.stdout.splitlines()[-1]
    assert [c.tag for c in junit_cases(project / "alone.xml")["L5[gone:wildcard-from-lo1:server]"]
            if c.tag != "properties"] == ["error"]


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
    """A folder that cannot be one stops the run before any cell (tests/test_cli_bad_input.py); one
    that fails only when written (here runs/ is a file inside it) ends the run with exit 3."""
    (project / "blocked").mkdir()
    (project / "blocked" / "runs").write_text("a file where the runs folder should be\n")
    proc = run_pytest(project, "-k", "L3", "--results-dir", "blocked")
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


def test_probe_requests_and_answers_are_logged_at_debug_live_and_in_junit(project):
    proc = run_pytest(project, "-k", "L3", "--log-cli-level=DEBUG", "-o", "junit_logging=log", "--junitxml=junit.xml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    listen = re.search(r'hvsock_matrix.probe.*lo1 -> \{"addr": "127.0.0.1", .*"op": "listen"', out)
    answer = re.search(r'hvsock_matrix.probe.*lo1 <- \{.*"event": "listening"', out)
    assert listen and answer and listen.start() < answer.start(), out
    system_out = junit_cases(project / "junit.xml")[L3].find("system-out").text
    assert '"op": "connect"' in system_out and '"event": "result"' in system_out
    assert "Captured log setup" not in out  # passed: pytest shows logs of failures only


def test_commands_a_cell_ran_are_a_report_section(tmp_path):
    project = make_project(tmp_path, outcomes=True)
    proc = run_pytest(project, "scenarios/outcomes.yaml", "-k", "L7")
    section = proc.stdout[proc.stdout.index("Captured hvsock-matrix commands setup"):].splitlines()[1:4]
    assert [line.split(":", 1)[0] for line in section] == ["lo2", "lo1", "lo2"]
    assert '"op": "listen"' in section[0] and '"op": "connect"' in section[1] and '"op": "stop"' in section[2]


def test_session_setup_starts_the_probes_before_the_first_cell(project):
    proc = run_pytest(project, "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.index("[run] starting the probe on lo1, lo2 at once") < out.index("[run] probes ready in") \
        < out.index("scenarios/loopback.yaml::L1[")  # not inside the first cell's setup or call
