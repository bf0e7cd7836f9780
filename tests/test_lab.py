"""The lab-in-a-box for real: boot (or reuse) it, reach every node, check vsock facts, C1/C2.

Minutes under TCG, hence the qemu mark. The lab is left running for the next test module (and
the pytest plugin); tests/test_lab_down.py stops it and checks that no qemu is left.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.outcome import Outcome

pytestmark = pytest.mark.qemu
REPO = Path(__file__).resolve().parent.parent


def test_lab_reports_itself_up(lab):
    from harness.lab import lab_is_up, lifecycle

    assert lab_is_up()
    st = lifecycle.status()
    assert st["running"] and st["ready"] and st["ssh"] and st["guests"] == 2
    assert set(st["boot_s"]) == {"l1", "vm21", "vm22"}


def test_up_again_reuses_the_running_lab(lab):
    from harness.lab import lifecycle

    before = lifecycle.status()["pid"]
    lines: list[str] = []
    state = lifecycle.up(guests=2, progress=lines.append)
    assert state["pid"] == before and any("reusing" in l for l in lines)


def test_every_node_answers_over_ssh(lab):
    inventory, pool = lab

    def hostname(name):
        res = pool.transport(name).run(["hostname"], timeout=400)
        return name, res.rc, res.stdout.strip()

    with ThreadPoolExecutor(len(inventory.nodes)) as ex:
        answers = list(ex.map(hostname, inventory.nodes))
    for name, rc, out in answers:
        assert (rc, out) == (0, name)


def test_probe_info_reports_each_nodes_own_cid(lab):
    inventory, pool = lab
    facts = pool.facts(inventory.nodes)
    assert facts["l1"]["local_cid"] == 2  # vhost_vsock loaded: l1 is VMADDR_CID_HOST
    assert facts["vm21"]["local_cid"] == 21 and facts["vm22"]["local_cid"] == 22
    for name, f in facts.items():
        assert f["dev_vsock"] and f["lab_node"] and f["hostname"] == name, (name, f)
    assert "vsock_loopback" in facts["l1"]["vsock_modules"] and "vhost_vsock" in facts["l1"]["vsock_modules"]
    assert "vsock_loopback" in facts["vm21"]["vsock_modules"]
    assert "vsock_loopback" not in facts["vm22"]["vsock_modules"]


@pytest.mark.parametrize("label", ["C1", "C2"])
def test_documented_c1_c2_observed_o(lab, label):
    from harness.runner import run_cell
    from harness.scenario import load_cells

    inventory, pool = lab
    cells = [c for c in load_cells(REPO / "scenarios" / "c-kvm-vsock.yaml", inventory)
             if c.label == label and "vm21" in (c.server_on, c.client_on)]
    assert len(cells) == 1
    obs = run_cell(cells[0], inventory, pool)
    assert obs.outcome is Outcome.O, obs.summary()
    assert obs.reply == f"Hello: {cells[0].payload}"
