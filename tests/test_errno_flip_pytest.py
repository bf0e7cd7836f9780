"""Issue 19: an errno-only change since the baseline is a flip, and every output says so alike.

Two real pytest runs of one real loopback cell (tests/loopback_project.py: the probe on 127.0.0.2
serves, the probe on 127.0.0.1 connects to 127.0.0.1, where the cell's own server never listens):

    night 1: nobody listens on 127.0.0.1:PORT               -> the kernel answers RST: X ECONNREFUSED
    night 2: a listener on 127.0.0.1:PORT whose accept queue is full (listen(0) plus one connection
             never accepted): Linux drops the SYN (net/ipv4/tcp_input.c tcp_conn_request,
             sk_acceptq_is_full -> drop) and the client's connect runs out of time -> X ETIMEDOUT

Same outcome, new errno: pytest FAILED, JUnit <failure> with the flip property, results.json's
verdict and flip, the terminal summary, matrix.md and matrix.html all say the same thing. The
change is made at the node (what answers on the port), never in the harness.
"""
from __future__ import annotations

import html
import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.results import load_run
from tests.loopback_project import make_project, run_pytest

SCENARIO = """\
scenario: F
title: an errno-only change
port_base: {port}
timeout: 3
pairs: any
cells:
  - label: F1
    server: {{on: lo2, bind: self}}
    client: {{on: lo1, target: node:lo1}}
    expect: X
"""
CELL = "F1[lo2:self-from-lo1:node:lo1]"
FLIP = "X ECONNREFUSED->X ETIMEDOUT"


def free_port() -> int:
    """A port free on 127.0.0.1 and 127.0.0.2 (the cell binds it on .2, the test fills it on .1)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as other:
                other.bind(("127.0.0.2", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free loopback port")


class FullAcceptQueue:
    """A real listener on 127.0.0.1:port that never accepts: listen(0) queues one connection
    (sk_acceptq_is_full is ack_backlog > max_ack_backlog), the filler takes it, later SYNs drop."""

    def __init__(self, port: int):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(0)
        self.fillers = []
        for _ in range(2):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            self.fillers.append(filler)

    def close(self) -> None:
        for s in [*self.fillers, self.listener]:
            s.close()


def junit_case(path: Path) -> ET.Element:
    return next(c for c in ET.parse(path).getroot().iter("testcase") if c.get("name") == CELL)


@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["one-process", "xdist-worker"])
def test_errno_only_change_fails_in_pytest_and_reads_the_same_everywhere(tmp_path, workers):
    """With xdist the worker judges from the baseline the controller sent it (outcome and errnos)."""
    project = make_project(tmp_path)
    port = free_port()
    (project / "scenarios" / "loopback.yaml").write_text(SCENARIO.format(port=port))

    first = run_pytest(project, "--junitxml=first.xml")
    assert first.returncode == 0, first.stdout + first.stderr
    night1 = load_run(next((project / "reports" / "runs").iterdir()) / "results.json")
    assert night1.cell(CELL).observation.errno_name == "ECONNREFUSED"

    full = FullAcceptQueue(port)
    try:
        second = run_pytest(project, "--baseline", "last", "--junitxml=second.xml", "-rA", *workers)
    finally:
        full.close()
    out = second.stdout

    # pytest: FAILED, with the one judgement's message
    assert second.returncode == 1, out + second.stderr
    assert f"FAILED scenarios/loopback.yaml::{CELL}" in out
    assert f"flipped since baseline ({FLIP}): observed X ETIMEDOUT" in out
    # JUnit: a failure, and the properties of the same judgement
    case = junit_case(project / "second.xml")
    assert [c.tag for c in case if c.tag != "properties"] == ["failure"]
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert (props["verdict"], props["flip"], props["baseline"], props["baseline_errno"]) == \
        ("fail", FLIP, "X", "ECONNREFUSED")
    assert props["errno"].startswith("ETIMEDOUT")
    # results.json: the same verdict and flip, the baseline's whole observation kept
    run = load_run(project / "reports" / "latest" / "results.json")
    assert run.run_id != night1.run_id
    stored = json.loads((project / "reports" / "latest" / "results.json").read_text())["cells"][0]
    assert (stored["verdict"], stored["flip"]) == ("fail", FLIP)
    assert stored["message"].startswith(f"flipped since baseline ({FLIP})")
    assert stored["baseline"]["errno_name"] == "ECONNREFUSED"
    assert run.meta["counts"]["flipped"] == 1 and [c.id for c in run.flips] == [CELL]
    # terminal summary: the flip listed first
    section = out[out.index("= hvsock-matrix ="):].splitlines()
    assert any(line.startswith("Changed since baseline ") and line.endswith(": 1") for line in section)
    assert any(line.startswith(f"  * {CELL}: X ECONNREFUSED -> X ETIMEDOUT (110)") for line in section), section
    # Markdown and HTML written by the same run
    folder = project / "reports" / "runs" / run.run_id
    md = (folder / "matrix.md").read_text()
    assert "## Changed since baseline: 1" in md and f"Δ{FLIP}" in md
    page = html.unescape((folder / "matrix.html").read_text())
    assert f"{CELL}: X ECONNREFUSED -> X ETIMEDOUT (110)" in page  # the list of changes, first
    assert f"CHANGED {FLIP}" in page and 'class="k X fl"' in page  # the cell, marked flipped
