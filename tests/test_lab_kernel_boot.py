"""A second Debian kernel boots as l1 (L1 only: nested guests on it are not run in CI).

Runs after test_lab_down.py (tests/conftest.py), in its own lab folder, so the shared lab's
qemus are gone and the CPU is this boot's. The kernel build is shared with the default cache
(kernels/ and the private apt folder are linked), so it is downloaded once per version.
Which kernel: $HVSOCK_MATRIX_TEST_KERNEL, default `backports` (one package, changes rarely);
`sid` exercises the split linux-binary/-modules packages and the /usr/lib/modules layout.
"""
from __future__ import annotations

import os
import shutil
import time

import pytest

pytestmark = pytest.mark.qemu

SPEC = os.environ.get("HVSOCK_MATRIX_TEST_KERNEL", "backports")


@pytest.fixture
def second_lab():
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    from harness.lab import lifecycle
    from tests.qemu_lab import linked_lab_paths

    paths = linked_lab_paths("kernel-check")
    yield paths
    lifecycle.down(progress=lambda line: None, paths=paths)


def test_l1_boots_a_second_kernel_and_reports_it(second_lab):
    from harness.agents import AgentPool
    from harness.inventory import load_inventory
    from harness.lab import lifecycle
    from harness.lab.kernel import ensure_kernel

    lines: list[str] = []
    t0 = time.monotonic()
    built = ensure_kernel(second_lab, SPEC, lines.append)
    t_build = time.monotonic() - t0
    stable = ensure_kernel(second_lab, "stable", lines.append)
    assert built.version != stable.version, "the second kernel resolved to stable's version"
    state = lifecycle.up(guests=0, progress=lines.append, paths=second_lab, kernel=SPEC)
    assert state["kernels"]["host"] == built.describe()
    status = lifecycle.status(paths=second_lab)
    assert status["kernels"]["l1"]["release"] == built.release
    pool = AgentPool(load_inventory(state["inventory"]))
    try:
        facts = pool.facts(["l1"])["l1"]
    finally:
        pool.close()
    assert facts.get("kernel") == built.release, facts  # what the node itself says: uname -r
    console = second_lab.l1_console.read_text(errors="replace")
    loaded = next(l for l in console.splitlines() if "vsock modules:" in l).split("vsock modules:", 1)[1].split()
    assert {"vsock", "vsock_loopback", "vhost_vsock", "vmw_vsock_virtio_transport_common"} <= set(loaded)
    assert "insmod" not in console  # no module failed to load
    print(f"\n{SPEC} = {built.version} ({built.release}): build/cached {t_build:.0f} s, "
          f"l1 ready {state['boot_s']['l1']:.0f} s after qemu start")
