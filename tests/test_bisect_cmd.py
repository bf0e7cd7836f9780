"""`bisect-cmd` / `bisect-step`: the printed command runs one real cell and exits 0 / 1 / 125 as
`git bisect run` reads them. Loopback cells (tests/loopback_project.py) run here in seconds; the
qemu test runs the same on the lab-in-a-box, with a dead port for the E.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loopback_project import REPO, make_project

O_CELL = "L1[lo1:wildcard-from-lo2:server]"  # documented O, observed O
X_CELL = "L2[lo2:self-from-lo1:node:lo1]"  # documented X, observed X ECONNREFUSED
E_CELL = "L5[gone:wildcard-from-lo1:server]"  # an ssh node on a closed port: E
MISMATCH_CELL = "L7[lo2:loopback-from-lo1:server]"  # documented O, observed X ECONNREFUSED


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def printed_command(project: Path, *args: str) -> str:
    proc = cli("bisect-cmd", *args, "--inventory", "inventory.yaml", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def bisect_run(command: str, elsewhere: Path) -> subprocess.CompletedProcess:
    """Run the printed line as `git bisect run sh -c LINE` would: from another folder, via sh."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(["sh", "-c", command], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project", outcomes=True)


def test_good_bad_and_e_cells_exit_0_1_125(project, tmp_path):
    elsewhere = tmp_path / "kernel-tree"
    elsewhere.mkdir()
    good = printed_command(project, O_CELL)
    assert "--expect O" in good and f"::{O_CELL}" in good  # the documented expectation is the good one
    proc = bisect_run(good, elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "observed O" in proc.stdout

    # X ECONNREFUSED is the documented expectation; with --expect O it is the other outcome
    bad = bisect_run(printed_command(project, X_CELL, "--expect", "O"), elsewhere)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "observed X ECONNREFUSED" in bad.stdout
    documented = bisect_run(printed_command(project, X_CELL), elsewhere)
    assert documented.returncode == 0, documented.stdout + documented.stderr

    broken = bisect_run(printed_command(project, E_CELL), elsewhere)
    assert broken.returncode == 125, broken.stdout + broken.stderr
    assert "E (" in broken.stdout and "cannot test" in broken.stdout


def test_the_outcome_decides_not_pytest_status(project, tmp_path):
    """L7 FAILS in pytest (documented O, observed X): asked whether X ECONNREFUSED is good, it is."""
    good = bisect_run(printed_command(project, MISMATCH_CELL, "--expect", "X", "ECONNREFUSED"), tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    other_errno = bisect_run(printed_command(project, MISMATCH_CELL, "--expect", "X", "ETIMEDOUT"), tmp_path)
    assert other_errno.returncode == 1, other_errno.stdout + other_errno.stderr


def test_out_writes_an_executable_script(project, tmp_path):
    script = tmp_path / "step.sh"
    proc = cli("bisect-cmd", X_CELL, "--inventory", "inventory.yaml", "--out", str(script), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert os.access(script, os.X_OK) and script.read_text().startswith("#!/bin/sh\n")
    run = subprocess.run([str(script)], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_cell_that_cannot_run_is_125_and_unknown_ids_are_one_line(project, tmp_path):
    gone = project / "scenarios" / "loopback.yaml"
    command = printed_command(project, O_CELL)
    gone.unlink()  # the cell's file is gone at this commit: nothing can run
    proc = bisect_run(command, tmp_path)
    assert proc.returncode == 125, proc.stdout + proc.stderr
    unknown = cli("bisect-cmd", "NOPE[a:b-from-c:d]", "--inventory", "inventory.yaml", cwd=project)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert re.fullmatch(r"hvsock-matrix: NOPE\[a:b-from-c:d\]: no such cell .*\n", unknown.stderr), unknown.stderr
    bad_expect = cli("bisect-cmd", O_CELL, "--inventory", "inventory.yaml", "--expect", "maybe", cwd=project)
    assert bad_expect.returncode == 2 and "--expect 'maybe'" in bad_expect.stderr


@pytest.mark.qemu
def test_on_the_lab_in_a_box_0_1_and_125_for_a_dead_lab(lab, tmp_path):
    """A real lab cell (KVM-L1-LOOP, documented O); a copy of the inventory on a dead port is E."""
    cell = "KVM-L1-LOOP[l1:wildcard-from-l1:loopback]"
    good = cli("bisect-cmd", cell, cwd=REPO)
    assert good.returncode == 0, good.stderr
    assert bisect_run(good.stdout.strip(), tmp_path).returncode == 0
    assert bisect_run(printed_command_lab(cell, "--expect", "X"), tmp_path).returncode == 1
    dead = tmp_path / "dead-lab.yaml"
    text = (REPO / "inventory" / "lab-in-a-box.yaml").read_text()
    text = text.replace("inventory: lab-in-a-box", "inventory: dead-lab")  # not the running lab's own file
    dead.write_text(re.sub(r"port: 2222\b", f"port: {closed_port()}", text).replace("connect_timeout: 60",
                                                                                       "connect_timeout: 5"))
    proc = cli("bisect-cmd", cell, "--inventory", str(dead), cwd=REPO)
    assert bisect_run(proc.stdout.strip(), tmp_path).returncode == 125


def printed_command_lab(cell: str, *args: str) -> str:
    proc = cli("bisect-cmd", cell, *args, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def closed_port() -> int:
    from tests.loopback_project import closed_port as port

    return port()


HOG = """import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the good steps' connections may be in TIME_WAIT
s.bind(("127.0.0.1", {port}))
s.listen()
print("ready", flush=True)
time.sleep(120)
"""


def test_bisect_run_finds_the_first_bad_commit(tmp_path):
    """`git bisect run` over a throwaway repository: each commit stands for a kernel; from k5 on the
    "kernel" has something on 127.0.0.1:PORT (a listener the step starts), so the cell's wildcard
    server cannot bind: B, not the good O. The bisect must name k5."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    from tests.loopback_project import closed_port as free_port

    project = make_project(tmp_path / "project")
    port = free_port()
    (project / "scenarios" / "loopback.yaml").write_text(
        f"scenario: G\nport: {port}\ntimeout: 10\npairs: any\ncells:\n"
        "  - {label: G1, server: {on: lo1, bind: wildcard}, client: {on: lo2, target: server}, expect: O}\n")
    one_cell = printed_command(project, "G1[lo1:wildcard-from-lo2:server]")
    repo = tmp_path / "bisected"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    for n in range(8):
        (repo / "k").write_text(str(n))
        subprocess.run([*git, "add", "k"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-q", "-m", f"k{n}"], cwd=repo, check=True)
    (tmp_path / "hog.py").write_text(HOG.format(port=port))
    step = tmp_path / "step.sh"
    step.write_text("#!/bin/sh\n"
                    "HOG=\n"
                    'if [ "$(cat k)" -ge 5 ]; then\n'
                    f"  {sys.executable} {tmp_path}/hog.py > {tmp_path}/hog.out & HOG=$!\n"
                    f"  for i in $(seq 100); do grep -q ready {tmp_path}/hog.out && break; sleep 0.1; done\n"
                    "fi\n"
                    f"{one_cell}\n"
                    "rc=$?\n"
                    '[ -n "$HOG" ] && kill "$HOG"\n'
                    "exit $rc\n")
    step.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([*git, "bisect", "start", "HEAD", "HEAD~7"], cwd=repo, check=True, capture_output=True)
    proc = subprocess.run([*git, "bisect", "run", str(step)], cwd=repo, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "observed B EADDRINUSE: bad (good is O)" in proc.stdout
    first_bad = re.search(r"^([0-9a-f]{40}) is the first bad commit", proc.stdout, re.M)
    assert first_bad, proc.stdout
    shown = subprocess.run(["git", "show", "-s", "--format=%s", first_bad[1]], cwd=repo, capture_output=True,
                           text=True, check=True)
    assert shown.stdout.strip() == "k5"
