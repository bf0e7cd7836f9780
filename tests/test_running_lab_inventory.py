"""Without --inventory, collection expands cells against the inventory the running lab wrote.

Before, collection read the checked-in inventory/lab-in-a-box.yaml and only session setup swapped
in the running lab's; a `lab up --netns` lab's namespace nodes were then "not run here" for every
cell of scenarios/vsock-netns.yaml. The real lab proves it end to end in test_lab_netns_boot.py.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import harness.lab as lab
from harness.lab import lifecycle
from harness.lifecycle import DEFAULT_INVENTORY, MatrixRun

REPO = Path(__file__).resolve().parent.parent


def _config(rootdir: Path, inventory: str | None = None):
    """The parts of a pytest.Config that MatrixRun reads (as an xdist worker: no recorder to start)."""
    options = {"inventory": inventory}
    return SimpleNamespace(getoption=lambda name, default=None: options.get(name, default), rootpath=rootdir,
                           invocation_params=SimpleNamespace(dir=rootdir), workerinput={"workerid": "gw0"})


def _rootdir(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / DEFAULT_INVENTORY).parent.mkdir(parents=True)
    shutil.copy(REPO / DEFAULT_INVENTORY, root / DEFAULT_INVENTORY)
    return root


def _written_lab(tmp_path: Path, monkeypatch, up: bool) -> Path:
    cache = tmp_path / "cache"
    run = cache / "run"
    run.mkdir(parents=True)
    written = run / "inventory.yaml"
    written.write_text((REPO / DEFAULT_INVENTORY).read_text())
    (run / "lab.json").write_text(json.dumps({"ready": True, "port": 2299, "inventory": str(written)}))
    monkeypatch.setenv("HVSOCK_MATRIX_CACHE", str(cache))
    monkeypatch.setattr(lifecycle, "is_up", lambda paths=None: up)
    return written


def test_a_running_lab_gives_its_written_inventory(tmp_path, monkeypatch):
    written = _written_lab(tmp_path, monkeypatch, up=True)
    assert lab.running_lab_inventory() == written
    assert MatrixRun(_config(_rootdir(tmp_path))).inventory_path() == written  # type: ignore[arg-type]


def test_no_lab_up_keeps_the_checked_in_inventory(tmp_path, monkeypatch):
    _written_lab(tmp_path, monkeypatch, up=False)
    root = _rootdir(tmp_path)
    assert lab.running_lab_inventory() is None
    assert MatrixRun(_config(root)).inventory_path() == root / DEFAULT_INVENTORY  # type: ignore[arg-type]


def test_an_explicit_inventory_wins_over_the_running_lab(tmp_path, monkeypatch):
    _written_lab(tmp_path, monkeypatch, up=True)
    root = _rootdir(tmp_path)
    mine = root / "mine.yaml"
    mine.write_text("x")
    assert MatrixRun(_config(root, "mine.yaml")).inventory_path() == mine  # type: ignore[arg-type]


def test_a_checkout_without_the_lab_inventory_asks_no_lab(tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the lab was consulted although no lab inventory is checked in")

    monkeypatch.setattr(lab, "running_lab_inventory", must_not_run)
    assert MatrixRun(_config(tmp_path)).inventory_path() is None  # type: ignore[arg-type]
