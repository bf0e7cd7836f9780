"""Workers on other machines, for real: `--tx ssh=...` to two hosts of the network-namespace lab.

Each worker host (tests/netns_lab.py: its own network namespace, its own sshd) gets its own
checkout, a private folder holding a copy of this repository's `harness` package and the project
(scenarios, inventory); the controller reaches it over SSH exactly as a user's `--tx` does
(execnet runs `ssh -F ssh_config root@host python -c ...`, then changes into the checkout). The
cells are real loopback cells (tests/loopback_project.py) run on each worker's own loopback.

What must hold: the controller gets every cell, `reports/` exists only on the controller, and a
worker killed mid-run (SIGKILL, as a machine that dies) loses only the cell it had not finished.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.results import load_run
from tests import netns_lab as netns_module
from tests.loopback_project import EXPECTED, REPO, make_project, plugin_args

netns_hosts = netns_module.netns_lab  # the module-scoped lab fixture, under this name here

pytestmark = pytest.mark.netns
WORKER_HOSTS = ("a", "b")

CONFTEST = '''
import json, os, time
from pathlib import Path

def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        import harness
        workeroutput["view"] = {"net_ns": os.readlink("/proc/self/ns/net"), "cwd": os.getcwd(),
                                "harness": harness.__file__}

def pytest_testnodedown(node, error):
    view = dict(getattr(node, "workeroutput", {}).get("view") or {})
    with open("worker-views.jsonl", "a") as out:
        out.write(json.dumps(dict(view, worker=node.gateway.id)) + "\\n")

def pytest_runtest_setup(item):
    hang = Path("hang-in")
    if os.environ.get("PYTEST_XDIST_WORKER") and hang.exists() and item.name.startswith(hang.read_text().strip()):
        hang.unlink()  # once: a replacement worker runs the cell
        Path("hanging.json").write_text(json.dumps({"pid": os.getpid(), "cell": item.name}))
        time.sleep(300)  # until the test kills this worker
'''


def checkout(root: Path, project: Path) -> Path:
    """A worker machine's own copy: the harness package and the project files, nothing shared."""
    root.mkdir(parents=True)
    shutil.copytree(REPO / "harness", root / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("scenarios", "inventory.yaml", "conftest.py"):
        source = project / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, root / name)
    return root


@pytest.fixture
def lab_project(netns_hosts, tmp_path):
    """(controller project, {host: checkout}, --tx args) for the two worker hosts."""
    project = make_project(tmp_path / "controller")
    (project / "conftest.py").write_text(CONFTEST)
    lab_dir = Path(netns_hosts.dir)
    config = lab_dir / "ssh_config"
    config.write_text("".join(
        f"Host {netns_hosts.addr(n)}\n  User root\n  IdentityFile {netns_hosts.client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {netns_hosts.known_hosts}\n  StrictHostKeyChecking yes\n  BatchMode yes\n"
        "  ConnectTimeout 20\n" for n in WORKER_HOSTS))
    checkouts = {n: checkout(lab_dir / tmp_path.name / f"host-{n}" / "hvsock-matrix", project) for n in WORKER_HOSTS}
    tx: list[str] = []
    for n in WORKER_HOSTS:
        tx += ["--tx", f"ssh=root@{netns_hosts.addr(n)}//python={sys.executable}//chdir={checkouts[n]}"
                       f"//ssh_config={config}"]
    yield project, checkouts, tx
    for n in WORKER_HOSTS:  # nothing of a run may stay on a worker host
        assert not [p for p in netns_hosts.processes(n) if "python" in p], netns_hosts.processes(n)


def controller(project: Path, *args: str) -> subprocess.Popen:
    """pytest as a user starts it on the controller (its environment never reaches the workers)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # -p no:rerunfailures: its xdist support has every worker connect back to a status server on
    # the controller's 127.0.0.1 (pytest_rerunfailures.py ClientStatusDB), which a worker on another
    # machine cannot reach: with it, SSH workers die in pytest_configure (ConnectionRefusedError)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:rerunfailures",
            *plugin_args(),
            # --opt=VALUE: xdist maps every argument naming an existing path to an rsync root for
            # ssh workers (xdist/workermanage.py make_reltoroot) and stops on one that is not
            "--inventory=inventory.yaml", "--results-dir=reports", "--dist=loadgroup", "-v", *args]
    return subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def the_run(project: Path):
    runs = list((project / "reports" / "runs").iterdir())
    assert len(runs) == 1, runs
    return load_run(runs[0] / "results.json")


def test_two_ssh_workers_give_the_controller_every_cell(netns_hosts, lab_project):
    project, checkouts, tx = lab_project
    # the scenarios as the recipe names them: -o testpaths=scenarios (a path argument `scenarios/`
    # would stop xdist: it names an existing folder outside its rsync roots)
    proc = controller(project, *tx, "--junitxml=junit.xml", "-o", "testpaths=scenarios")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "4 passed" in out
    views = [json.loads(line) for line in (project / "worker-views.jsonl").read_text().splitlines()]
    here = os.readlink("/proc/self/ns/net")
    assert len(views) == 2 and all(v["net_ns"] != here for v in views)  # other "machines"
    assert len({v["net_ns"] for v in views}) == 2
    assert sorted(v["cwd"] for v in views) == sorted(str(c) for c in checkouts.values())  # each its own checkout
    assert all(v["harness"].startswith(v["cwd"] + "/harness/") for v in views)  # and its own code
    run = the_run(project)
    assert {c.label: c.observation.outcome.value for c in run.cells} == EXPECTED
    assert sorted(run.meta["workers"]) == ["gw0", "gw1"]
    for n, path in checkouts.items():
        assert not (path / "reports").exists(), f"host {n} wrote reports/"
    worker_of = {m["label"]: m["gw"] for m in re.finditer(r"\[(?P<gw>gw\d)\] .*?PASSED .*?::(?P<label>L\d)\[", out)}
    assert worker_of["L1"] == worker_of["L3"] != worker_of["L2"] == worker_of["L4"]  # one server node per worker


def test_a_worker_killed_mid_run_loses_only_its_unfinished_cell(netns_hosts, lab_project):
    """--max-worker-restart=0 (a replacement would go to the same dead machine): the cell the dead
    worker was running is lost, every other one, its own earlier cells included, is kept.
    Observed and not yet understood: with --max-worker-restart=1 the controller starts a replacement
    over SSH and then waits on it for minutes (the popen workers of test_xdist_isolated_workers.py don't)."""
    restarts = 0
    project, checkouts, tx = lab_project
    for path in checkouts.values():
        (path / "hang-in").write_text("L3")  # lo1's worker runs L1, then hangs in L3 until killed
    proc = controller(project, *tx, f"--max-worker-restart={restarts}")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    hanging = None
    while hanging is None and time.monotonic() < deadline:
        hanging = next((p / "hanging.json" for p in checkouts.values() if (p / "hanging.json").exists()), None)
        time.sleep(0.2)
    assert hanging is not None, "".join(lines)
    victim = json.loads(hanging.read_text())["pid"]
    host = next(n for n, p in checkouts.items() if p == hanging.parent)
    assert victim in netns_hosts.pids(host)  # the worker runs on that host
    os.kill(victim, signal.SIGKILL)  # the machine dies mid-cell
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        reader.join(timeout=10)
        pytest.fail("the controller hung after the worker died:\n" + "".join(lines))
    reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode == 1, out  # the crash is a failure
    assert re.search(r"\[gw\d\] node down: Not properly terminated", out), out
    assert re.search(r"\[gw\d\] .*FAILED .*::L3\[", out), out  # the unfinished cell is reported as lost
    run = the_run(project)
    got = {c.label: c.observation.outcome.value for c in run.cells}
    assert got == {label: o for label, o in EXPECTED.items() if label != "L3"}, out  # L1 ran on the dead worker
    for path in checkouts.values():
        assert not (path / "reports").exists()
