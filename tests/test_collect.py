"""`pytest scenarios/` collection, run as a user runs it (a subprocess from the checkout)."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED_IDS = [
    "A1[hv-host:wildcard-from-win-vm:parent]", "A2[hv-host:wildcard-from-hv-host:loopback]",
    "A3[win-vm:wildcard-from-hv-host:server]", "A4[win-vm:wildcard-from-win-vm:loopback]",
    "A5[hv-host:loopback-from-win-vm:parent]", "A6[hv-host:loopback-from-hv-host:loopback]",
    "A7[win-vm:loopback-from-hv-host:server]", "A8[win-vm:loopback-from-win-vm:loopback]",
    "A9[hv-host:children-from-win-vm:parent]", "A10[hv-host:children-from-hv-host:loopback]",
    "A11[win-vm:children-from-hv-host:server]", "A12[win-vm:children-from-win-vm:loopback]",
    "A3-literal[win-vm:wildcard-from-hv-host:loopback]", "A4-literal[win-vm:wildcard-from-win-vm:self]",
    "B1[hv-host:wildcard-from-linux-vm-hv:parent]", "B2[linux-vm-hv:wildcard-from-hv-host:server]",
    "B3[linux-vm-hv:wildcard-from-linux-vm-hv:loopback]",
    "C1[kvm-guest:wildcard-from-kvm-host:server]", "C2[kvm-host:wildcard-from-kvm-guest:parent]",
    "C3[kvm-guest:wildcard-from-kvm-host:server+command]",
]


def _plugin_args() -> list[str]:
    installed = any(ep.name == "hvsock_matrix" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "harness.plugin"]


def run_pytest(*args: str, cwd: Path = ROOT, plugin: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    extra = _plugin_args() if plugin else []
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *extra, *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_documented_cell_is_listed_by_readable_id():
    result = run_pytest("scenarios/", "--collect-only", "-q", "--inventory", "inventory/hyperv-lab.example.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = {line.split("::", 1)[1] for line in result.stdout.splitlines() if "::" in line}
    missing = [i for i in DOCUMENTED_IDS if i not in listed]
    assert not missing, missing
    assert len(listed) > 100  # plus the undocumented axes cells


def test_k_selects_cells_by_id():
    result = run_pytest("scenarios/b-linux-vm-on-hyperv.yaml", "scenarios/c-kvm-vsock.yaml", "--collect-only", "-q",
                        "--inventory", "inventory/hyperv-lab.example.yaml", "-k", "B1 or C2")
    ids = sorted(line.split("::", 1)[1] for line in result.stdout.splitlines() if "::" in line)
    assert ids == ["B1[hv-host:wildcard-from-linux-vm-hv:parent]", "C2-socat[kvm-host:wildcard-from-kvm-guest:parent+socat]",
                   "C2[kvm-host:wildcard-from-kvm-guest:parent]"]


def test_every_id_is_one_k_identifier():
    """pytest's own -k grammar takes each whole id as one identifier (no `<`, no `@`)."""
    from _pytest.mark.expression import Expression

    for cell_id in DOCUMENTED_IDS:
        assert Expression.compile(cell_id).evaluate(lambda name, cell_id=cell_id, **kw: name == cell_id), cell_id


@pytest.mark.parametrize("cell_id", ["A7[win-vm:loopback-from-hv-host:server]",
                                     "C2[kvm-host:wildcard-from-kvm-guest:parent]",
                                     "C2-socat[kvm-host:wildcard-from-kvm-guest:parent+socat]"])
def test_k_with_a_whole_id_selects_exactly_that_cell(cell_id):
    result = run_pytest("scenarios/", "--collect-only", "-q", "--inventory", "inventory/hyperv-lab.example.yaml",
                        "-k", cell_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split("::", 1)[1] for line in result.stdout.splitlines() if "::" in line] == [cell_id]


def _collected(*args: str) -> list[str]:
    result = run_pytest("scenarios/", "--collect-only", "-q", "--strict-markers",
                        "--inventory", "inventory/hyperv-lab.example.yaml", *args)
    assert result.returncode in (0, 5), result.stdout + result.stderr
    return [line.split("::", 1)[1] for line in result.stdout.splitlines() if "::" in line]


def test_markers_select_cells_by_driver_family_and_scenario_under_strict_markers():
    every, socat, not_socat = _collected(), _collected("-m", "socat"), _collected("-m", "not socat")
    assert socat and all(i.endswith("+socat]") for i in socat)
    assert sorted(socat + not_socat) == sorted(every)
    b_vsock = _collected("-m", "scenario(name='B') and vsock and probe")
    assert b_vsock == ["B1[hv-host:wildcard-from-linux-vm-hv:parent]", "B2[linux-vm-hv:wildcard-from-hv-host:server]",
                       "B3[linux-vm-hv:wildcard-from-linux-vm-hv:loopback]"]
    assert not any(i.startswith("A") for i in _collected("-m", "vsock or tcp"))  # A is Hyper-V only


@pytest.fixture
def project(tmp_path):
    """A throwaway checkout layout: scenarios/ with one good file, no inventory."""
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "good.yaml").write_text(textwrap.dedent("""\
        scenario: G
        port: 30000
        cells:
          - label: G1
            server: {on: windows-host, bind: wildcard}
            client: {on: windows-vm, target: parent}
            expect: O
        """))
    (tmp_path / "scenarios" / "not-a-scenario.yaml").write_text("inventory: x\nnodes: []\n")
    (tmp_path / "elsewhere.yaml").write_text("scenario: E\nport: 1\ncells: []\n")
    return tmp_path


def test_without_inventory_cells_are_skipped_with_the_reason(project):
    result = run_pytest("-rs", "-q", cwd=project, plugin=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "no inventory (give --inventory PATH)" in result.stdout


def test_only_scenario_files_under_scenarios_are_collected(project):
    result = run_pytest("--collect-only", "-q", cwd=project, plugin=True)
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    assert ids == ["scenarios/good.yaml::G1[windows-host:wildcard-from-windows-vm:parent]"]


def test_missing_node_skip_reason_names_the_inventory(project):
    (project / "inv.yaml").write_text("inventory: small\nnodes:\n  - {name: h, role: host, os: windows}\n")
    result = run_pytest("-rs", "-q", "--inventory", "inv.yaml", cwd=project, plugin=True)
    assert "inventory small has no windows-vm node" in result.stdout, result.stdout


def test_bad_scenario_file_is_one_line_not_a_traceback(project):
    (project / "scenarios" / "bad.yaml").write_text("scenario: Z\nport: 70\ncells:\n  - server: {on: h, bind: nowhere}\n"
                                                    "    client: {on: server, target: loopback}\n")
    result = run_pytest("--collect-only", "-q", cwd=project, plugin=True)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in out
    assert "scenarios/bad.yaml:4: bind: unknown bind token 'nowhere'" in out


def test_bad_inventory_is_one_usage_error_line(project):
    (project / "inv.yaml").write_text("inventory: x\nnodes:\n  - {name: h, role: hots, os: linux}\n")
    result = run_pytest("--collect-only", "-q", "--inventory", "inv.yaml", cwd=project, plugin=True)
    assert result.returncode == 4  # pytest's usage error
    assert "Traceback" not in result.stdout + result.stderr
    assert "inv.yaml:3: role: expected 'host' or 'vm', not 'hots'" in result.stderr
