"""`lab down` stops the lab's qemu and leaves nothing behind (runs last among the lab tests).

If no lab is running, a guest-less one is booted first (~10 s), so the stop is always real.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.qemu


def _our_qemus(cache: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name.startswith("qemu-system") and \
                any(str(cache).encode() in a for a in argv):
            found.append(int(proc.name))
    return found


def test_down_stops_every_qemu_it_started_and_removes_its_run_folder():
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    from harness.lab import lab_is_up, lifecycle, qemu
    from harness.lab.paths import LabPaths
    from tests.qemu_lab import release_lab

    release_lab()  # the shared pool's sessions and connections end before their nodes do
    paths = LabPaths.default()
    if qemu.running_pid(paths) is None:
        lifecycle.up(guests=0, progress=lambda line: None)
    pid = qemu.running_pid(paths)
    assert pid and _our_qemus(paths.root) == [pid]
    lines: list[str] = []
    assert lifecycle.down(progress=lines.append) == pid
    assert _our_qemus(paths.root) == []
    assert not paths.run_dir.exists()
    assert not lab_is_up() and lifecycle.status()["running"] is False
    assert lifecycle.down(progress=lines.append) is None  # a second down is harmless
