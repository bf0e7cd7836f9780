"""Nothing measured is lost: a controller killed with SIGKILL mid-run keeps every cell it had recorded.

Real runs on loopback nodes (tests/loopback_project.py). A conftest in the project makes the run
hang in L3's setup (after L1 and L2 were reported); the test then kills pytest with SIGKILL, as
the OOM killer or a CI timeout would, and reads what is left through the commands a user has.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.results import Recorder, load_run, resolve_run
from harness.results.journal import load_journal
from tests.loopback_project import REPO, make_project, plugin_args, run_pytest

HANG = '''
import os, time
from pathlib import Path

def pytest_runtest_setup(item):
    if Path("hang-in").exists() and item.name.startswith(Path("hang-in").read_text().strip()):
        Path("hanging").write_text(str(os.getpid()))
        time.sleep(300)
'''


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args, "--results-dir", "reports"], cwd=project,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)


def killed_run(project: Path, cell: str = "L3") -> str:
    """Start a run, SIGKILL it once it hangs in `cell`; the run id it was writing."""
    (project / "hang-in").write_text(cell)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:benchmark", *plugin_args(),
            "--inventory", "inventory.yaml", "--results-dir", "reports"]
    proc = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (project / "hanging").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run never reached the hang"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (project / "hang-in").unlink()
    (project / "hanging").unlink()
    unfinished = [p for p in (project / "reports" / "runs").iterdir() if not (p / "results.json").exists()]
    assert len(unfinished) == 1, unfinished
    return unfinished[0].name


@pytest.fixture
def project(tmp_path):
    project = make_project(tmp_path / "project")
    (project / "conftest.py").write_text(HANG)
    return project


def test_a_run_killed_with_sigkill_keeps_every_reported_cell(project):
    first = run_pytest(project)  # a complete run before: what `--baseline last` must keep choosing
    assert first.returncode == 0, first.stdout + first.stderr
    complete = load_run(resolve_run("last", project / "reports"))
    killed = killed_run(project)

    run = load_run(resolve_run(killed, project / "reports"))  # by run id, as a user names it
    assert run.run_id == killed and run.meta["incomplete"] is True
    assert [c.label for c in run.cells] == ["L1", "L2"]  # reported before the kill, in collection order
    assert {c.label: c.observation.outcome.value for c in run.cells} == {"L1": "O", "L2": "X"}
    assert run.cell("L2[lo2:self-from-lo1:node:lo1]").observation.errno_name == "ECONNREFUSED"
    assert set(run.meta["node_facts"]) >= {"lo1", "lo2"}

    report = cli(project, "report", killed)
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith("INCOMPLETE: the controller stopped before the run finished")
    html = cli(project, "report", f"reports/runs/{killed}", "--html", "k.html", "--md", "k.md")
    assert html.returncode == 0, html.stderr
    assert "INCOMPLETE" in (project / "k.html").read_text() and "**incomplete**" in (project / "k.md").read_text()
    diff = cli(project, "diff", complete.run_id, killed)
    assert diff.returncode == 0, diff.stdout + diff.stderr  # nothing the killed run measured flipped
    assert "INCOMPLETE" in diff.stdout and f"Only in {complete.run_id}: 2" in diff.stdout  # L3, L4 never ran

    after = run_pytest(project, "--baseline", "last")  # the killed run is not "last"
    assert after.returncode == 0, after.stdout + after.stderr
    newest = load_run(resolve_run("last", project / "reports"))
    assert newest.meta["baseline"]["run_id"] == complete.run_id
    asked = run_pytest(project, "--baseline", killed)  # unless asked for by name
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert load_run(resolve_run("last", project / "reports")).meta["baseline"]["run_id"] == killed
    assert not list((project / "reports" / "runs").glob("*/journal.jsonl"))[1:]  # finished runs keep no journal


def test_a_line_torn_by_the_kill_is_dropped_and_a_broken_journal_is_one_line(tmp_path):
    from harness.cell import Cell
    from harness.outcome import Observation, Outcome

    recorder = Recorder(tmp_path / "reports", {"run_id": "20261130T000000Z-abcdef"})
    recorder.record(Cell("T", "a", "wildcard", "b", "server", 1, Outcome.O, label="T1"), Observation(Outcome.O))
    path = recorder.journal.path
    with open(path, "a") as out:
        out.write('{"cell": {"id": "T2[a:wildcard-from-b:ser')  # the kill came mid-line
    run = load_journal(path)
    assert [c.label for c in run.cells] == ["T1"] and run.meta["torn_lines"] == 1
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", lines[1]]) + "\n")
    with pytest.raises(InputError, match=r"journal.jsonl:2: not a journal line"):
        load_journal(path)
    path.write_text(json.dumps({"cell": {}}) + "\n")
    with pytest.raises(InputError, match="no meta line"):
        load_journal(path)
