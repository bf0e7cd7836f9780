"""An explicit --inventory written by another lab (`lab up --port/--netns/--hybrid`) is used as given.

Before, RunSession swapped any inventory named lab-in-a-box for the default lab's (HVSOCK_MATRIX_CACHE),
so a run pointed at a second lab's inventory ran against the shared lab and every cell became n/a.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from harness.inventory import load_inventory
from harness.session import RunSession

REPO = Path(__file__).resolve().parent.parent


def test_a_labs_own_inventory_is_neither_swapped_nor_booted(tmp_path, monkeypatch):
    run_dir = tmp_path / "otherlab" / "run"
    run_dir.mkdir(parents=True)
    shutil.copy(REPO / "inventory" / "lab-in-a-box.yaml", run_dir / "inventory.yaml")
    (run_dir / "lab.json").write_text("{}")
    import harness.lab as lab

    def must_not_run(*args, **kwargs):
        raise AssertionError("the default lab was consulted for another lab's inventory")

    monkeypatch.setattr(lab, "lab_is_up", must_not_run)
    monkeypatch.setattr(lab, "ensure_lab", must_not_run)
    inv = load_inventory(str(run_dir / "inventory.yaml"))
    session = RunSession(inv, warm_up=False)
    session._ensure_lab()
    assert session.inventory is inv and session._lab_error is None


def test_the_checked_in_lab_inventory_still_follows_the_running_lab(tmp_path, monkeypatch):
    running = tmp_path / "lab" / "run"
    running.mkdir(parents=True)
    shutil.copy(REPO / "inventory" / "lab-in-a-box.yaml", running / "inventory.yaml")
    import harness.lab as lab
    from harness.lab import lifecycle

    monkeypatch.setattr(lab, "lab_is_up", lambda: True)
    monkeypatch.setattr(lifecycle, "status", lambda: {"inventory": str(running / "inventory.yaml")})
    session = RunSession(load_inventory(str(REPO / "inventory" / "lab-in-a-box.yaml")), warm_up=False)
    session._ensure_lab()
    assert str(session.inventory.path) == str(running / "inventory.yaml")
