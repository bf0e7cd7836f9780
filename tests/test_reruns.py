"""`pytest --reruns N` (pytest-rerunfailures) runs a disagreeing cell again for real; a cell that agrees
on a rerun is flaky, and says so in the terminal, JUnit, results.json and the HTML matrix.

The flip lives AT THE NODE, not in the harness: each cell is a command-driver cell whose server is a
small script on the node (a local loopback node) that, the first time it is started, announces
itself but does not listen (the client's connect is refused: X ECONNREFUSED), or crashes before it
is ready (E); every later start listens and echoes. The client is a plain TCP client script.
"""
from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET

import pytest

from harness.results import load_run, resolve_run
from tests.loopback_project import closed_port, make_project, run_pytest

SERVER = '''\
import socket, sys, time
from pathlib import Path
addr, port, state, first = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
starts = int(state.read_text()) + 1 if state.exists() else 1
state.write_text(str(starts))
if starts == 1 and first == "refuse":
    print("ready (not listening: the first connection is refused)", flush=True)
    time.sleep(30)
    sys.exit(0)
if starts == 1 and first == "crash":
    print("node-side crash before listening", flush=True)
    sys.exit(3)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(1)
print("ready", flush=True)
conn, _ = s.accept()
line = conn.makefile().readline().strip()
conn.sendall(("Hello: " + line + "\\n").encode())
conn.close()
'''

CLIENT = '''\
import socket, sys
target, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    c = socket.create_connection((target, port), timeout=5)
except ConnectionRefusedError as err:
    print(f"connect: {err} (ECONNREFUSED)", file=sys.stderr)
    sys.exit(1)
c.sendall((payload + "\\n").encode())
print(c.makefile().readline().strip())
'''

SCENARIO = """\
scenario: F
title: cells that flip on their first attempt only, at the node
port_base: {port}
timeout: 10
pairs: any
cells:
  - label: F1
    server: {{on: lo1, bind: wildcard}}
    client: {{on: lo2, target: server}}
    expect: O
    driver: {{kind: command, ready: "^ready", server: "{py} {dir}/server.py {{addr}} {{port}} {dir}/f1.state refuse",
              client: "{py} {dir}/client.py {{target}} {{port}} {{payload}}"}}
  - label: F2
    server: {{on: lo2, bind: self}}
    client: {{on: lo1, target: server}}
    expect: O
    driver: {{kind: command, ready: "^ready", server: "{py} {dir}/server.py {{addr}} {{port}} {dir}/f2.state crash",
              client: "{py} {dir}/client.py {{target}} {{port}} {{payload}}"}}
"""
F1 = "F1[lo1:wildcard-from-lo2:server+command]"
F2 = "F2[lo2:self-from-lo1:server+command]"


@pytest.fixture
def project(tmp_path):
    project = make_project(tmp_path / "project")
    node = tmp_path / "node"  # what lives on the node: the server and client scripts, their state
    node.mkdir()
    (node / "server.py").write_text(SERVER)
    (node / "client.py").write_text(CLIENT)
    port = closed_port()
    (project / "scenarios" / "loopback.yaml").unlink()
    (project / "scenarios" / "flip.yaml").write_text(SCENARIO.format(port=port, py=sys.executable, dir=node))
    return project, node


def test_without_reruns_the_first_attempt_fails(project):
    project, _ = project
    proc = run_pytest(project, "-rA")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"FAILED scenarios/flip.yaml::{F1}" in proc.stdout and "expected O, observed X ECONNREFUSED" in proc.stdout
    assert f"ERROR scenarios/flip.yaml::{F2}" in proc.stdout
    assert "1 failed, 1 error" in proc.stdout


def test_with_reruns_the_cells_pass_as_flaky_everywhere(project):
    project, node = project
    proc = run_pytest(project, "--reruns", "1", "--junitxml=junit.xml", "-rA")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"2 passed, 2 rerun", proc.stdout), proc.stdout  # pytest: rerun, then passed
    assert [json.loads(p.read_text()) for p in (node / "f1.state", node / "f2.state")] == [2, 2]  # ran twice at the node
    # terminal matrix: the flaky list with every attempt (the E too), and O~ in the matrix
    assert "Flaky in this run (agreed only on a rerun): 2" in proc.stdout
    assert re.search(rf"~ {re.escape(F1)}: X ECONNREFUSED.*, then O .*on rerun 1", proc.stdout), proc.stdout
    assert re.search(rf"~ {re.escape(F2)}: E .*, then O .*on rerun 1", proc.stdout), proc.stdout
    assert proc.stdout.count("O~") >= 2
    # results.json: each attempt kept, the cell flaky
    run = load_run(resolve_run("last", project / "reports"))
    f1, f2 = run.cell(F1), run.cell(F2)
    assert f1.flaky and f1.observation.outcome.value == "O" and f1.judged.kind == "pass"
    assert [a["observation"]["outcome"] for a in f1.attempts] == ["X"] and f1.attempts[0]["verdict"] == "fail"
    assert f1.attempts[0]["observation"]["errno_name"] == "ECONNREFUSED"
    assert [a["verdict"] for a in f2.attempts] == ["error"]  # the E is kept, never silently an O
    assert run.meta["counts"]["flaky"] == 2
    # JUnit: one testcase per cell, passed, carrying its failed attempt (Surefire's names)
    cases = {c.get("name"): c for c in ET.parse(project / "junit.xml").getroot().iter("testcase")}
    props = {name: [(p.get("name"), p.get("value")) for p in case.iter("property")] for name, case in cases.items()}
    assert not list(cases[F1].iter("failure")) and not list(cases[F1].iter("error"))
    assert [n for n, _ in props[F1]].count("flakyFailure") == 1
    assert re.match(r"attempt 1: expected O, observed X ECONNREFUSED", dict(props[F1])["flakyFailure"])
    assert dict(props[F2])["flakyError"].startswith("attempt 1: E (harness or lab failure")
    assert dict(props[F1])["observed"] == "O" and [n for n, _ in props[F1]].count("observed") == 1
    # HTML: marked in the matrix and listed on top
    page = (project / "reports" / "latest" / "matrix.html").read_text()
    section = page[page.index('<section id="flaky-run">'):page.index('<section id="mismatches">')]
    assert F1 in section and F2 in section
    assert len(re.findall(r'class="k O fk"', page)) == 2
    md = (project / "reports" / "latest" / "matrix.md").read_text()
    assert "~flaky (first X ECONNREFUSED" in md


def test_reruns_under_xdist_workers_reach_the_controller_as_flaky(project):
    """-n 2: each worker reruns its own cell; the controller records both attempts of each."""
    project, _ = project
    proc = run_pytest(project, "-n", "2", "--reruns", "1", "-rA")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"2 passed, 2 rerun", proc.stdout), proc.stdout
    run = load_run(resolve_run("last", project / "reports"))
    assert run.cell(F1).flaky and run.cell(F2).flaky
    assert [a["verdict"] for a in run.cell(F1).attempts] == ["fail"]
    assert [a["verdict"] for a in run.cell(F2).attempts] == ["error"]
