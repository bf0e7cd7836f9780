"""One lab-in-a-box and one agent pool for every qemu test module of a pytest run.

On a nested guest a fresh SSH connection costs ~55 s and a probe start 10-50 s (lab-recipe.md).
Per-module fixtures paid that again in every module; this session fixture boots (or reuses) the
lab once, starts every node's resident probe in parallel once, and hands the same pool to all.
tests/test_lab_down.py releases it (release_lab) before stopping the lab, as the last qemu test.
"""
from __future__ import annotations

import shutil
import time

import pytest

_POOLS: list = []


def linked_lab_paths(name: str):
    """A lab folder of its own under the default cache, sharing kernels/ and apt/ (built once)."""
    from harness.lab.paths import LabPaths

    shared = LabPaths.default()
    paths = LabPaths(shared.root / name)
    paths.root.mkdir(parents=True, exist_ok=True)
    for sub in ("kernels", "apt"):
        (shared.root / sub).mkdir(parents=True, exist_ok=True)
        if not (paths.root / sub).is_symlink():
            (paths.root / sub).symlink_to(shared.root / sub)
    return paths


def release_lab() -> None:
    """Close the shared pool (sessions and SSH connections) before the lab goes down."""
    while _POOLS:
        _POOLS.pop().close()


@pytest.fixture(scope="session")
def lab():
    """(inventory, pool) of the running lab-in-a-box with 2 guests, every agent already started."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    from harness.agents import AgentPool
    from harness.inventory import load_inventory
    from harness.lab import ensure_lab

    t0 = time.monotonic()
    inventory = load_inventory(ensure_lab(guests=2))
    booted = time.monotonic()
    pool = AgentPool(inventory)
    _POOLS.append(pool)
    failed = {name: f["error"] for name, f in pool.facts(inventory.nodes).items() if "error" in f}
    if failed:
        release_lab()
        pytest.fail(f"lab agents did not start: {failed}")
    print(f"\nlab ready in {booted - t0:.1f} s, every node's probe in {time.monotonic() - booted:.1f} s more")
    yield inventory, pool
    release_lab()
