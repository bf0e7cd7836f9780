"""A synthetic run history written as real results files (reports/history/<run-id>.json), with
cells planted to be stable, changed, flaky and infra: shared by tests/test_history.py and
benchmarks/bench_history.py.

The files have the shape harness/results.py writes (Run.to_dict of CellResults with full
observations: commands, addresses, times), so reading them costs what reading real ones does.
"""
from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

from harness.cell import Cell
from harness.outcome import Observation, Outcome
from harness.results import CellResult

KERNEL_BEFORE, KERNEL_AFTER = "6.1.0-57-amd64", "6.12.95+deb12-amd64"


def run_id(index: int) -> str:
    when = dt.datetime(2024, 1, 1, 2, 0, tzinfo=dt.UTC) + dt.timedelta(days=index)
    return when.strftime("%Y%m%dT%H%M%SZ") + f"-{index:06x}"


def observation(key: str, port: int) -> Observation:
    outcome, _, errno = key.partition(" ")
    base = dict(commands=[f'l1: {{"op":"listen","family":"vsock","addr":"4294967295","port":{port},"count":1}}',
                          f'vm21: {{"op":"connect","family":"vsock","addr":"2","port":{port},"payload":"World!"}}'],
                server_address=f"cid=4294967295 port={port}", client_address=f"cid=2 port={port}",
                started_at="2026-01-02T03:04:05Z", duration_ms=123.4)
    if outcome == "O":
        return Observation(Outcome.O, elapsed_ms=2.5, reply="Hello: World!", **base)
    if outcome == "X":
        return Observation(Outcome.X, errno_name=errno, errno=104, elapsed_ms=3.0, **base)
    if outcome == "B":
        return Observation(Outcome.B, bind_errno_name=errno, bind_errno=98, **base)
    return Observation(Outcome.E, detail="ssh channel closed before the listener answered", **base)


def planted(runs: int) -> dict[str, tuple[str, object]]:
    """label -> (pattern, function run index -> key or None when the cell was not in that run)."""
    change_at, errno_change_at = runs * 6 // 10, runs * 8 // 10
    flaky_at = {runs // 10, runs // 3, runs - 25, runs - 12, runs - 5}
    infra_at = {runs // 4, runs - 8, runs - 3}
    return {
        "P-STABLE-O": ("stable", lambda i: "O"),
        "P-STABLE-X": ("stable", lambda i: "X ECONNRESET"),
        "P-STABLE-GAPS": ("stable", lambda i: None if i % 7 == 3 else "O"),  # not in every run
        "P-CHANGED": ("changed", lambda i: "O" if i < change_at else "X ECONNRESET"),
        "P-CHANGED-ERRNO": ("changed", lambda i: "X ECONNREFUSED" if i < errno_change_at else "X ETIMEDOUT"),
        "P-FLAKY": ("flaky", lambda i: "X ETIMEDOUT" if i in flaky_at else "O"),
        "P-INFRA": ("infra", lambda i: "E" if i in infra_at else "O"),
        "P-INFRA-ONLY": ("infra", lambda i: "E"),
    }


def write_history(results_dir: Path, runs: int, cells: int, seed: int = 7) -> dict[str, str]:
    """Write `runs` results files of `cells` cells (8 planted, the rest stable); {cell id: pattern}."""
    rng = random.Random(seed)
    plants = planted(runs)
    folder = Path(results_dir) / "history"
    folder.mkdir(parents=True, exist_ok=True)
    labels = list(plants) + [f"S{n}" for n in range(max(0, cells - len(plants)))]
    stable_keys = {label: rng.choice(["O", "O", "X ECONNRESET", "B EADDRNOTAVAIL"]) for label in labels}
    templates: dict[str, dict[str, object]] = {}
    expected: dict[str, str] = {}
    for n, label in enumerate(labels):
        documented = Outcome.O if label == "P-CHANGED" else None
        cell = Cell("SYN", "l1", "wildcard", "vm21", f"server{n}", 30000 + n, documented, label=label,
                    source="synthetic")
        result = CellResult.from_cell(cell, observation("O", cell.port), seq=n)
        templates[label] = result.to_dict()
        expected[cell.id] = plants[label][0] if label in plants else "stable"
    observed_cache: dict[tuple[str, int], dict[str, object]] = {}
    for i in range(runs):
        kernel = KERNEL_BEFORE if i < runs // 2 else KERNEL_AFTER
        out = []
        for n, label in enumerate(labels):
            key = plants[label][1](i) if label in plants else stable_keys[label]
            if key is None:
                continue
            if (key, n) not in observed_cache:
                observed_cache[(key, n)] = observation(key, 30000 + n).to_dict()
            out.append(dict(templates[label], observation=observed_cache[(key, n)]))
        data = {"schema": 1, "run_id": run_id(i),
                "meta": {"run_id": run_id(i), "started": run_id(i)[:15],
                         "node_facts": {node: {"os": "linux", "kernel": kernel} for node in ("l1", "vm21")}},
                "cells": out}
        (folder / f"{run_id(i)}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return expected
