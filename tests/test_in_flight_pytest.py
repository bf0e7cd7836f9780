"""--cells-in-flight end to end: real pytest runs of local TCP cells (the resident local probe,
real listeners on 127.0.0.x, real socat-free command cells) in a temporary folder.

What must hold with cells in flight: the same outcome and errno in every cell as one after
another; pytest reports in collection order; -k deselected cells never run; -x records only
what pytest reported, once, and leaves no listener behind; cells really overlap.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PORT_BASE = 24100  # below the ephemeral range (32768-60999): no client socket of this machine takes them
INVENTORY = ("inventory: local\nnodes:\n"
             "  - {name: here, role: host, os: linux, family: tcp, address: 127.0.0.1, access: {kind: local}}\n")


def probe_cells() -> str:
    """O, X ECONNREFUSED, B EADDRNOTAVAIL and n/a cells; P4 (an X) is documented O: a failure."""
    lines = [f"scenario: P\nport_base: {PORT_BASE}\ntimeout: 5\ncells:"]
    binds = ["wildcard", "127.0.0.1", "127.0.0.2", "10.255.255.1", "children"]
    targets = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    n = 0
    for bind in binds:
        for target in targets:
            expect = "    expect: O\n" if n == 4 else ""
            lines.append(f"  - label: P{n}\n    server: {{on: here, bind: {bind}}}\n"
                         f"    client: {{on: here, target: {target}}}\n{expect}".rstrip("\n"))
            n += 1
    return "\n".join(lines) + "\n"


SERVER = "sh -c 'echo ready; exec sleep 300'"  # ready at its `ready` line; killed when the cell ends


def command_cells(client: str, count: int, scenario: str = "K") -> str:
    """Command cells on distinct ports whose client template is `client` ({port} filled in)."""
    lines = [f"scenario: {scenario}\nport_base: {PORT_BASE + 100}\ntimeout: 60\ncells:"]
    for i in range(count):
        lines.append(f"  - label: {scenario}{i}\n    server: {{on: here, bind: loopback}}\n"
                     f"    client: {{on: here, target: 127.0.0.{i + 1}}}\n"
                     f"    driver: {{kind: command, server: {json.dumps(SERVER)}, client: {json.dumps(client)}, "
                     f"ready: '^ready$'}}")
    return "\n".join(lines) + "\n"


def run(folder: Path, scenario: str, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, list]:
    (folder / "inventory.yaml").write_text(INVENTORY)
    (folder / "scenarios").mkdir(exist_ok=True)
    (folder / "scenarios" / "cells.yaml").write_text(scenario)
    reports = folder / "reports"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "pytest", "scenarios/cells.yaml", "--inventory", "inventory.yaml",
                           "-p", "no:cacheprovider", "-v", "--rootdir", str(folder), "--results-dir", str(reports),
                           *args], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    runs = sorted((reports / "runs").glob("*/results.json")) if (reports / "runs").is_dir() else []
    cells = json.loads(runs[-1].read_text())["cells"] if runs else []
    return proc, cells


def reported(stdout: str) -> list[str]:
    return re.findall(r"^scenarios/cells.yaml::(\S+) (?:PASSED|FAILED|SKIPPED|ERROR)", stdout, re.MULTILINE)


def listeners_in_range() -> list[str]:
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, timeout=30).stdout
    return [line for line in out.splitlines()
            if any(f":{p} " in line + " " for p in range(PORT_BASE, PORT_BASE + 200))]


@pytest.fixture
def folders(tmp_path):
    return tmp_path / "one", tmp_path / "many"


def test_same_outcomes_and_errnos_and_collection_order_as_one_after_another(folders):
    one, many = folders
    one.mkdir(), many.mkdir()
    seq, seq_cells = run(one, probe_cells(), "--cells-in-flight", "1")
    par, par_cells = run(many, probe_cells(), "--cells-in-flight", "6")
    assert seq.returncode == par.returncode == 1, seq.stdout[-3000:] + par.stdout[-3000:]

    def view(cells):
        return [(c["id"], c["observation"]["outcome"], c["observation"]["errno_name"],
                 c["observation"]["bind_errno_name"]) for c in cells]

    assert view(par_cells) == view(seq_cells)
    assert {o for _, o, _, _ in view(par_cells)} == {"O", "X", "B", "n/a"}
    assert reported(par.stdout) == reported(seq.stdout) == [c["id"] for c in seq_cells]
    assert "1 failed" in par.stdout and "1 failed" in seq.stdout
    assert not listeners_in_range()


def test_deselected_cells_never_run(tmp_path):
    marks = tmp_path / "ran"
    marks.mkdir()
    client = f"sh -c 'touch {marks}/{{port}}; echo connect: Connection refused >&2; exit 1'"
    proc, cells = run(tmp_path, command_cells(client, 6), "--cells-in-flight", "4", "-k", "K1 or K4")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sorted(p.name for p in marks.iterdir()) == [str(PORT_BASE + 100 + 1), str(PORT_BASE + 100 + 4)]
    assert sorted(c["label"] for c in cells) == ["K1", "K4"]


def test_exitfirst_records_only_what_pytest_reported_and_leaves_no_listener(tmp_path):
    proc, cells = run(tmp_path, probe_cells(), "--cells-in-flight", "6", "-x")
    assert proc.returncode == 1, proc.stdout[-3000:]
    shown = reported(proc.stdout)
    assert [cell_id.split("[")[0] for cell_id in shown] == ["P0", "P1", "P2", "P3", "P4"]
    assert [c["id"] for c in cells] == shown  # each once; the cells run ahead are not recorded
    assert not listeners_in_range()


def test_cells_really_overlap(tmp_path):
    """Two cells that each wait (bounded) to see the other running: only a run that overlaps them
    gets both O; one after another, each would give up after 20 s and fail."""
    meet = tmp_path / "meet"
    meet.mkdir()
    client = (f"sh -c 'touch {meet}/{{port}}; i=0; while [ $(ls {meet} | wc -l) -lt 2 ]; do "
              f"i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.1; done; exit 0'")
    scenario = command_cells(client, 2).replace("    driver:", "    expect: O\n    driver:")
    proc, cells = run(tmp_path, scenario, "--cells-in-flight", "4")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert [c["observation"]["outcome"] for c in cells] == ["O", "O"]


def test_ctrl_c_leaves_no_process_and_records_only_reported_cells(tmp_path):
    marks = tmp_path / "started"
    marks.mkdir()
    client = f"sh -c 'touch {marks}/{{port}}; sleep 4; echo connect: Connection refused >&2; exit 1'"
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "cells.yaml").write_text(command_cells(client, 8))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "scenarios/cells.yaml", "--inventory", "inventory.yaml",
                             "-p", "no:cacheprovider", "-v", "--rootdir", str(tmp_path), "--results-dir",
                             str(tmp_path / "reports"), "--cells-in-flight", "4"], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(marks.iterdir())) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # polling: two cells in flight (the process-start limit), then Ctrl-C
        assert proc.poll() is None and len(list(marks.iterdir())) >= 2
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "KeyboardInterrupt" in out
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_mentions(p, str(marks))]
    assert not leftovers  # the cells in flight ended and stopped their servers before pytest exited
    runs = sorted((tmp_path / "reports" / "runs").glob("*/results.json")) if (tmp_path / "reports").is_dir() else []
    recorded = [c["id"] for c in json.loads(runs[-1].read_text())["cells"]] if runs else []
    assert set(recorded) <= set(reported(out)) and len(recorded) == len(set(recorded))


def _cmdline_mentions(proc_dir: Path, text: str) -> bool:
    try:
        return text in (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def test_a_dead_node_makes_its_cells_E_and_the_others_still_run(tmp_path):
    """`gone` cannot start its probe (no interpreter there): its cells are E, as one after another."""
    gone = "  - {name: gone, role: host, os: linux, family: tcp, address: 127.0.0.1, " \
           "access: {kind: local, python: /nonexistent/python3}}\n"
    lines = [f"scenario: D\nport_base: {PORT_BASE + 150}\ntimeout: 5\ncells:"]
    for i, (server, client) in enumerate([("here", "here"), ("gone", "here"), ("here", "gone"), ("here", "here"),
                                          ("gone", "gone"), ("here", "here")]):
        lines.append(f"  - label: D{i}\n    server: {{on: {server}, bind: 127.0.0.{i + 1}}}\n"
                     f"    client: {{on: {client}, target: 127.0.0.{i + 1}}}")
    results = {}
    for n in ("1", "4"):
        folder = tmp_path / n
        folder.mkdir()
        (folder / "inventory.yaml").write_text(INVENTORY + gone)
        (folder / "scenarios").mkdir()
        (folder / "scenarios" / "cells.yaml").write_text("\n".join(lines) + "\n")
        proc = subprocess.run([sys.executable, "-m", "pytest", "scenarios/cells.yaml", "--inventory", "inventory.yaml",
                               "-p", "no:cacheprovider", "-q", "--rootdir", str(folder), "--results-dir",
                               str(folder / "reports"), "--cells-in-flight", n], cwd=folder,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300)
        cells = json.loads(sorted((folder / "reports" / "runs").glob("*/results.json"))[-1].read_text())["cells"]
        results[n] = [(c["label"], c["observation"]["outcome"]) for c in cells]
        assert "3 passed" in proc.stdout and "1 error" in proc.stdout, proc.stdout[-3000:]
    assert results["4"] == results["1"]
    assert [(label, outcome) for label, outcome in results["1"] if label in ("D0", "D3", "D4", "D5")] == \
        [("D0", "O"), ("D3", "O"), ("D4", "E"), ("D5", "O")]
    assert not listeners_in_range()
