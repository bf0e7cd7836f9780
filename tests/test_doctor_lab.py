"""`doctor` against the lab-in-a-box for real: qemu guests with vsock, reached over SSH.

Boots (or reuses) the lab with harness.lab.ensure_lab(); minutes under TCG, hence the qemu mark.
"""
from __future__ import annotations

import shutil

import pytest

from harness.doctor.checks import FAIL, OK

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def lab_inventory():
    try:
        from harness.lab import ensure_lab
    except ImportError as err:
        pytest.skip(f"harness.lab.ensure_lab not available: {err}")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    from harness.inventory import load_inventory

    return load_inventory(ensure_lab())


def test_doctor_sees_the_lab_guests_vsock(lab_inventory):
    from harness.agents import AgentPool
    from harness.doctor.diagnose import diagnose

    with AgentPool(lab_inventory) as pool:
        results = diagnose(lab_inventory, pool)
    assert set(results) == set(lab_inventory.nodes)
    for name, rows in results.items():
        by_what = {r.what: r for r in rows}
        node = lab_inventory.node(name)
        assert "node reachable" not in by_what, by_what["node reachable"].detail
        assert by_what["/dev/vsock"].state == OK
        assert by_what["module vsock"].state == OK
        if node.role == "vm" and node.cid is not None:
            assert by_what["local CID"].state == OK and by_what["local CID"].detail == str(node.cid)
        assert not [r for r in rows if r.state == FAIL and r.what.startswith("Python")]
