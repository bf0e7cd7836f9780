"""A throwaway project whose cells really run on this machine: two local tcp nodes on 127.0.0.1
and 127.0.0.2 (Linux routes all of 127/8 to loopback), so pytest, xdist and the whole results
path run end to end in seconds, without the qemu lab and without network namespaces.

    L1  lo1 wildcard   <- lo2 server     O   (INADDR_ANY accepts 127.0.0.2's client)
    L2  lo2 self       <- lo1 node:lo1   X   ECONNREFUSED (nobody listens on 127.0.0.1)
    L3  lo1 loopback   <- lo1 loopback   O
    L4  lo2 self       <- lo2 server     O

With outcomes=True, scenarios/outcomes.yaml adds one cell per pytest outcome:
    L5  gone wildcard  <- lo1 server     E     ERROR: an ssh node on a closed loopback port
    L6  lo1 children   <- lo2 server     n/a   SKIPPED: tcp has no "children"
    L7  lo2 loopback   <- lo1 server     X (127.0.0.2 refused), documented O: FAILED (a mismatch)

Ports: a random base per project in 25000-29999, so concurrent runs on a busy machine do not collide
(and no ephemeral port of an outgoing connection takes a wildcard listener's port).
"""
from __future__ import annotations

import importlib.metadata
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CELLS = ("L1", "L2", "L3", "L4")
EXPECTED = {"L1": "O", "L2": "X", "L3": "O", "L4": "O"}

SCENARIO = """\
scenario: L
title: loopback cells on the controller
port_base: {port_base}
timeout: 10
pairs: any
cells:
  - label: L1
    server: {{on: lo1, bind: wildcard}}
    client: {{on: lo2, target: server}}
    expect: O
  - label: L2
    server: {{on: lo2, bind: self}}
    client: {{on: lo1, target: node:lo1}}
    expect: X
  - label: L3
    server: {{on: lo1, bind: loopback}}
    client: {{on: lo1, target: loopback}}
    expect: O
  - label: L4
    server: {{on: lo2, bind: self}}
    client: {{on: lo2, target: server}}
    expect: O
"""

OUTCOMES = """\
scenario: U
port_base: {port_base}
timeout: 10
pairs: any
cells:
  - label: L5
    server: {{on: gone, bind: wildcard}}
    client: {{on: lo1, target: server}}
    expect: O
  - label: L6
    server: {{on: lo1, bind: children}}
    client: {{on: lo2, target: server}}
  - label: L7
    server: {{on: lo2, bind: loopback}}
    client: {{on: lo1, target: server}}
    expect: O
"""

INVENTORY = """\
inventory: loopback
nodes:
  - {{name: lo1, role: host, os: linux, family: tcp, address: 127.0.0.1}}
  - {{name: lo2, role: host, os: linux, family: tcp, address: 127.0.0.2}}
  - name: gone
    role: host
    os: linux
    family: tcp
    address: 127.0.0.3
    access: {{kind: ssh, host: 127.0.0.1, port: {closed_port}, user: nobody, connect_timeout: 10}}
"""


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed: connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_project(root: Path, outcomes: bool = False) -> Path:
    base = 25000 + secrets.randbelow(4980)  # below the ephemeral range (32768-60999), clear of fixed test ports
    (root / "scenarios").mkdir(parents=True)
    (root / "scenarios" / "loopback.yaml").write_text(SCENARIO.format(port_base=base))
    if outcomes:
        (root / "scenarios" / "outcomes.yaml").write_text(OUTCOMES.format(port_base=base + 10))
    (root / "inventory.yaml").write_text(INVENTORY.format(closed_port=closed_port()))
    return root


def plugin_args() -> list[str]:
    installed = any(ep.name == "hvsock_matrix" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "harness.plugin"]


def run_pytest(project: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                   **env)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:benchmark", *plugin_args(),
            "--inventory", "inventory.yaml", "--results-dir", "reports", *args]
    return subprocess.run(argv, cwd=project, env=environ, capture_output=True, text=True, timeout=timeout)
