"""`doctor` against the lab-in-a-box for real: qemu guests with vsock, reached over SSH.

Uses the shared lab (tests/qemu_lab.py); minutes under TCG, hence the qemu mark.
"""
from __future__ import annotations

import pytest

from harness.doctor.checks import FAIL, OK

pytestmark = pytest.mark.qemu


def test_doctor_sees_the_lab_guests_vsock(lab):
    from harness.doctor.diagnose import diagnose

    lab_inventory, pool = lab
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
