"""`lab up --hybrid N` without a boot: what l1 is told, the refusals, the backend check, the status.

The boot itself (vhost-user-vsock-device served by vhost-device-vsock in l1, and the matrix on
it) is tests/test_lab_hybrid_boot.py (qemu marker). l1's init (harness/lab/files/init.sh) reads
the hvlab.hybrid/vdv/hmode words asserted here.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.lab import backend, lifecycle, qemu
from harness.lab.paths import KernelPaths, LabPaths


@pytest.fixture
def tools(tmp_path, monkeypatch):
    monkeypatch.setenv("HVSOCK_MATRIX_TOOLS", str(tmp_path / "tools"))
    return tmp_path / "tools"


def _fake_backend(version_line: str) -> Path:
    path = backend.binary()
    path.parent.mkdir(parents=True)
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    os.chmod(path, 0o755)
    return path


def test_l1_is_told_the_hybrid_guests_the_backend_and_its_mode(tools):
    paths = LabPaths(Path("/tmp/hvsock-lab-x"))
    k = KernelPaths(paths.root / "kernels" / "6.1.192-3")
    words = qemu.l1_argv(paths, 2232, 0, k, k, hybrid=2, hybrid_mode="per-guest")
    append = words[words.index("-append") + 1].split()
    assert {"hvlab.hybrid=2", f"hvlab.vdv={backend.binary()}", "hvlab.hmode=per-guest"} <= set(append)
    assert words[words.index("-m") + 1] == str(1536 + 768 * 2)  # room for the two guests' shared memory
    assert "hvlab.hybrid" not in " ".join(qemu.l1_argv(paths, 2232, 2, k, k))
    assert backend.binary() == tools / "vhost-device-vsock-0.3.0" / "bin" / "vhost-device-vsock"


def test_the_init_script_starts_the_backend_before_the_guests_with_shared_memory():
    init = (Path(__file__).resolve().parent.parent / "harness" / "lab" / "files" / "init.sh").read_text()
    block = init[init.index('if [ "$level" = 1 ] && [ "$hybrid" -gt 0 ]'):]
    assert block.index('"$vdv"') < block.index("qemu-system-x86_64")  # the backend listens first
    assert "memory-backend-memfd,id=hmem,size=512M,share=on" in block  # vhost-user maps guest memory
    assert "vhost-user-vsock-device,chardev=vsock0" in block
    assert f"hdir={backend.HYBRID_RUN_DIR}" in block  # l1's own /run, where the probe allows hybrid paths
    assert f"guest-cid={backend.OTHER_GROUP_CID}," in block and f"groups={backend.OTHER_GROUP}" in block


@pytest.mark.parametrize("kwargs, words", [
    ({"hybrid": 3}, "--hybrid 3: 0..2"),
    ({"hybrid": 1, "hybrid_mode": "both"}, "--hybrid-backend both"),
])
def test_up_refuses_before_anything_runs(tmp_path, tools, kwargs, words):
    _fake_backend("vhost-device-vsock 0.3.0")
    with pytest.raises(HarnessError, match=words):
        lifecycle.up(guests=0, paths=LabPaths(tmp_path / "lab"), **kwargs)
    assert not (tmp_path / "lab" / "run").exists()


def test_a_missing_or_other_backend_is_one_line_saying_how_to_get_it(tmp_path, tools):
    with pytest.raises(HarnessError) as err:
        lifecycle.up(guests=0, hybrid=2, paths=LabPaths(tmp_path / "lab"))
    assert "scripts/setup.sh" in str(err.value) and "\n" not in str(err.value)
    _fake_backend("vhost-device-vsock 0.2.9")
    with pytest.raises(HarnessError, match=r"is not vhost-device-vsock 0\.3\.0"):
        lifecycle.up(guests=0, hybrid=2, paths=LabPaths(tmp_path / "lab"))
    assert not (tmp_path / "lab" / "run").exists()


def test_status_names_each_nodes_vsock_device_and_the_backend_version():
    state = {"guests": 2, "hybrid": {"guests": 2, "mode": "shared", "backend": "vhost-device-vsock 0.3.0"}}
    kinds = lifecycle.node_vsock_kinds(state)
    assert set(kinds) == {"l1", "l1-hybrid", "vm21", "vm22", "vm31", "vm32"}
    assert "vhost-user-vsock-device (vhost-device-vsock 0.3.0)" in kinds["vm31"]
    assert "vhost-vsock-device" in kinds["vm21"] and "shared backend" in kinds["l1-hybrid"]
    assert "l1-hybrid" not in lifecycle.node_vsock_kinds({"guests": 2})
