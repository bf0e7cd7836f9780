"""The documents' matrices are always visible: a cell this lab cannot run (no Windows node) is in the
run as "not run here: needs windows-host" with its documented expectation, next to what did run.

The project runs its real loopback cells (tests/loopback_project.py) with the repository's own
scenario files for matrices A and B (Windows host and VMs), which no loopback inventory can run.
"""
from __future__ import annotations

import re
import shutil

import pytest

from harness.results import load_run, resolve_run
from tests.loopback_project import REPO, make_project, run_pytest

DOCUMENTED = ("a-hyperv-wildcards.yaml", "b-linux-vm-on-hyperv.yaml")


@pytest.fixture
def project(tmp_path):
    project = make_project(tmp_path / "project")
    for name in DOCUMENTED:
        shutil.copyfile(REPO / "scenarios" / name, project / "scenarios" / name)
    return project


def test_matrices_a_and_b_are_shown_not_run_next_to_what_ran(project):
    proc = run_pytest(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = load_run(resolve_run("last", project / "reports"))
    ran = [c for c in run.cells if not c.not_run]
    not_run = [c for c in run.cells if c.not_run]
    assert {c.label for c in ran} == {"L1", "L2", "L3", "L4"}
    assert {c.scenario for c in not_run} == {"A", "B"}
    a1 = next(c for c in not_run if c.label == "A1")
    assert a1.expected is not None and a1.expected.value == "O"  # the documented expectation is kept
    assert a1.judged.kind == "skip" and not a1.mismatch and "windows-host" in (a1.not_run or "")
    assert run.meta["counts"]["not run"] == len(not_run) and run.meta["counts"]["n/a"] == 0

    html = (project / "reports" / "latest" / "matrix.html").read_text()
    for scenario in ("A", "B", "L"):
        assert f'id="scenario-{scenario}"' in html
    assert re.search(r'class="k NR"[^>]*title="A1\[', html)
    assert "not run here: needs windows-host · exp O" in html
    md = (project / "reports" / "latest" / "matrix.md").read_text()
    assert "## Scenario A" in md and "## Scenario B" in md and "## Scenario L" in md
    assert "not run here: needs windows-host (exp O)" in md
    assert "Differs from the documented expectation: 0" in md or "expectation: 0" in md  # not-run is no mismatch


def test_a_run_of_only_cells_that_cannot_run_writes_nothing(project):
    for path in (project / "scenarios").glob("loopback.yaml"):
        path.unlink()
    proc = run_pytest(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped" in proc.stdout
    assert not (project / "reports").exists()
