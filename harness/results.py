"""Results store: one JSON file per run, a history of runs, and the baseline a run is judged against.

Why this shape: xdist workers may run on other machines, so results reach the controller
inside pytest's test reports (harness/lifecycle.py), never through files; what reached the
controller survives a crashed worker. The controller writes one `results.json` atomically
(temp file + os.replace) when the session finishes, also after Ctrl-C. Layout under the
results directory (default `reports/`):

    runs/<run-id>/results.json         the run (plus matrix.html, matrix.md from harness.report)
    history/<run-id>.json              the same file, kept for `--baseline last`, `diff` and strips
    latest -> runs/<run-id>            symlink (a text file holding the run id where symlinks fail)
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness import __version__
from harness.cell import Cell, current_id
from harness.errors import InputError
from harness.outcome import Observation, Outcome

SCHEMA = 1

# The cell fields a results file keeps; enough to lay out a matrix and explain a cell without the
# scenario file.
CELL_FIELDS = ("scenario", "label", "server_on", "bind", "client_on", "target", "port",
               "disputed", "source", "note", "service", "payload", "defined_at", "socket", "expected_errno")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id(now: _dt.datetime | None = None) -> str:
    """Sortable by time, unique across controllers started in the same second."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def flip_between(before: Observation | None, after: Observation | None) -> str | None:
    """"O->X" when the outcome changed, "X ECONNRESET->X ETIMEDOUT" when its errno did, else None.

    Any change of outcome counts (O->X, X->O, anything->E, E->O, ->n/a): a nightly run's job is
    to say what is different from last night. So does a new errno for the same X or B (a kernel
    that turns "no listener" into "dropped" is a regression); timing changes alone are not flips,
    nor is an errno missing on one side (a run recorded before errnos were kept).
    """
    if before is None or after is None:
        return None
    if before.outcome is not after.outcome:
        return f"{before.outcome.value}->{after.outcome.value}"
    old, new = before.outcome_errno, after.outcome_errno
    if old and new and old != new:
        return f"{before.outcome.value} {old}->{after.outcome.value} {new}"
    return None


@dataclass
class CellResult:
    """One cell as stored in a results file: the cell's description plus what was observed."""

    id: str
    observation: Observation
    expected: Outcome | None = None
    driver: str = "probe"
    fields: dict[str, Any] = field(default_factory=dict)  # CELL_FIELDS
    baseline: Observation | None = None  # the baseline run's observation of this cell, if any
    flip: str | None = None  # "O->X" against that baseline
    seq: int | None = None  # position in pytest's collection order, when known

    def __getattr__(self, name: str) -> Any:  # scenario, label, server_on, ... from fields
        fields = self.__dict__.get("fields", {})
        if name in CELL_FIELDS:
            return fields.get(name)
        raise AttributeError(name)

    @property
    def mismatch(self) -> bool:
        """Observed differs from a known expectation (outcome, or the errno when one is expected)."""
        if self.expected is None:
            return False
        if self.observation.outcome is not self.expected:
            return True
        return bool(self.expected_errno) and self.observation.outcome_errno != self.expected_errno

    @classmethod
    def from_cell(cls, cell: Cell, observation: Observation,
                  baseline: Observation | None = None, seq: int | None = None) -> "CellResult":
        return cls(
            seq=seq,
            id=cell.id,
            observation=observation,
            expected=cell.expected,
            driver=cell.driver.kind,
            fields={name: getattr(cell, name) for name in CELL_FIELDS},
            baseline=baseline,
            flip=flip_between(baseline, observation),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id}
        data.update(self.fields)
        data["driver"] = self.driver
        data["expected"] = self.expected.value if self.expected else None
        data["observation"] = self.observation.to_dict()
        data["baseline"] = self.baseline.to_dict() if self.baseline else None
        data["flip"] = self.flip
        data["seq"] = self.seq
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CellResult":
        expected = data.get("expected")
        baseline = data.get("baseline")
        return cls(
            id=current_id(data["id"]),
            observation=Observation.from_dict(data["observation"]),
            expected=Outcome.parse(expected) if expected else None,
            driver=data.get("driver") or "probe",
            fields={name: data.get(name) for name in CELL_FIELDS},
            baseline=Observation.from_dict(baseline) if baseline else None,
            flip=data.get("flip"),
            seq=data.get("seq"),
        )

    def sort_key(self) -> tuple:
        """Collection order when known, else the documents' order (A2 before A10), then tokens."""
        label = [(0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", self.label or "") if part]
        return (self.seq is None, self.seq or 0, str(self.scenario), self.label is None, label,
                str(self.server_on), str(self.bind), str(self.client_on), str(self.target), self.driver)


@dataclass
class Run:
    """A loaded results file."""

    run_id: str
    meta: dict[str, Any]
    cells: list[CellResult]
    path: Path | None = None

    def cell(self, cell_id: str) -> CellResult | None:
        return self._index().get(cell_id)

    def _index(self) -> dict[str, CellResult]:
        index = self.__dict__.get("_by_id")
        if index is None or len(index) != len(self.cells):
            index = {c.id: c for c in self.cells}
            self.__dict__["_by_id"] = index
        return index

    @property
    def flips(self) -> list[CellResult]:
        return [c for c in self.cells if c.flip]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "run_id": self.run_id, "meta": self.meta,
                "cells": [c.to_dict() for c in self.cells]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> "Run":
        return cls(run_id=data["run_id"], meta=data.get("meta") or {},
                   cells=[CellResult.from_dict(c) for c in data.get("cells") or []], path=path)


# ---------------------------------------------------------------------------------------------
# files


def _readable(fd: int) -> None:
    """mkstemp makes 0600 files; results are ordinary files (0666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON so a reader never sees half a file: temp file in the same folder + os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _readable(fd)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _readable(fd)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load_run(path: Path | str) -> Run:
    """Read a results file; a missing or broken file is one clear line (InputError)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "results file not found") from None
    except OSError as err:
        raise InputError(str(path), f"cannot read results file: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}", f"not valid JSON: {err.msg}") from None
    if not isinstance(data, dict) or "run_id" not in data or not isinstance(data.get("cells"), list):
        raise InputError(str(path), "not an hvsock-matrix results file (no run_id / cells)")
    try:
        return Run.from_dict(data, path=path)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(str(path), f"malformed cell in results file: {err}") from None


def history_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "history"


def run_dir(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "runs" / run_id


def list_history(results_dir: Path) -> list[Path]:
    """History files, oldest first (run ids start with a UTC timestamp)."""
    folder = history_dir(results_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def resolve_run(ref: str, results_dir: Path | str = "reports") -> Path:
    """A results file from a path, a run id, `last` (newest run) or `previous` (the one before)."""
    results_dir = Path(results_dir)
    if ref in ("last", "latest", "previous"):
        runs = list_history(results_dir)
        need = 2 if ref == "previous" else 1
        if len(runs) < need:
            raise InputError(str(history_dir(results_dir)),
                             f"`{ref}`: only {len(runs)} run(s) in the history")
        return runs[-need]
    candidate = Path(ref)
    if candidate.is_dir() and (candidate / "results.json").is_file():
        return candidate / "results.json"
    if candidate.is_file():
        return candidate
    by_id = history_dir(results_dir) / f"{ref}.json"
    if by_id.is_file():
        return by_id
    raise InputError(ref, f"no such results file or run id (looked in {history_dir(results_dir)})")


def load_history(results_dir: Path, before: str | None = None, limit: int = 10) -> list[Run]:
    """The last `limit` runs older than run id `before` (oldest first); unreadable ones skipped."""
    paths = [p for p in list_history(results_dir) if before is None or p.stem < before]
    runs = []
    for path in paths[-limit:] if limit > 0 else []:
        try:
            runs.append(load_run(path))
        except InputError:
            continue
    return runs


def point_latest(results_dir: Path, run_id: str) -> Path:
    """Make `latest` point at runs/<run_id>: a symlink swapped atomically, else a pointer file."""
    results_dir = Path(results_dir)
    latest = results_dir / "latest"
    tmp = results_dir / f".latest.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(Path("runs") / run_id, tmp, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(tmp, latest)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        if latest.is_symlink():
            latest.unlink()
        write_text_atomic(latest, run_id + "\n")
    return latest


# ---------------------------------------------------------------------------------------------
# recording


class Recorder:
    """Builds one run from the cells that reach it, then writes it once, atomically.

    In a pytest run there is one Recorder, on the controller: cells arrive with pytest's own test
    reports (harness/lifecycle.py), from this process or from xdist workers on other machines,
    so nothing here needs a filesystem shared with the workers.

    `Recorder(results_dir, meta)`; `record(cell, observation)` or `add(result)`; `finish() -> Path`.
    meta keys used: run_id, started, baseline_path, inventory, pytest_args, node_facts.
    """

    def __init__(self, results_dir: Path | str, meta: dict[str, Any] | None = None):
        self.results_dir = Path(results_dir)
        self.meta: dict[str, Any] = dict(meta or {})
        self.run_id: str = self.meta.setdefault("run_id", new_run_id())
        self.meta.setdefault("started", utc_now())
        self.meta.setdefault("harness_version", __version__)
        self.node_facts: dict[str, dict[str, Any]] = dict(self.meta.pop("node_facts", None) or {})
        self.cells: dict[str, CellResult] = {}
        self.workers: set[str] = set()  # xdist workers that delivered cells
        self.run: Run | None = None  # set by finish()
        self.baseline: Run | None = None
        baseline_path = self.meta.get("baseline_path")
        if baseline_path:
            self.baseline = load_run(baseline_path)
            self.meta["baseline"] = {"run_id": self.baseline.run_id, "path": str(baseline_path)}

    @property
    def run_dir(self) -> Path:
        return run_dir(self.results_dir, self.run_id)

    def baseline_observation(self, cell_id: str) -> Observation | None:
        if self.baseline is None:
            return None
        found = self.baseline.cell(cell_id)
        return found.observation if found else None

    def baseline_outcomes(self) -> dict[str, str]:
        """cell id -> outcome of the baseline run: all a worker needs to judge a flip."""
        if self.baseline is None:
            return {}
        return {c.id: c.observation.outcome.value for c in self.baseline.cells}

    def flip_of(self, cell_id: str, observation: Observation) -> str | None:
        """"O->X" when this cell's outcome changed since the baseline run, else None."""
        return flip_between(self.baseline_observation(cell_id), observation)

    def set_node_facts(self, node: str, facts: dict[str, Any]) -> None:
        self.node_facts[node] = dict(facts)

    def update_meta(self, **values: Any) -> None:
        """E.g. inventory={"name":..., "path":...}; the first value of a key wins."""
        for key, value in values.items():
            self.meta.setdefault(key, value)

    def record(self, cell: Cell, observation: Observation, seq: int | None = None) -> CellResult:
        return self.add(CellResult.from_cell(cell, observation, seq=seq))

    def add(self, result: CellResult, worker: str | None = None) -> CellResult:
        """Keep one cell's result; its baseline and flip come from this recorder's baseline."""
        result.baseline = self.baseline_observation(result.id)
        result.flip = flip_between(result.baseline, result.observation)
        self.cells[result.id] = result
        if worker:
            self.workers.add(worker)
        return result

    def has_results(self) -> bool:
        return bool(self.cells)

    def build_run(self) -> Run:
        meta = dict(self.meta)
        meta["node_facts"] = dict(self.node_facts)
        meta["finished"] = utc_now()
        meta["workers"] = sorted(self.workers)
        meta["counts"] = _counts(self.cells.values())
        # cells arrive in completion order; the run is stored in collection / document order
        return Run(run_id=self.run_id, meta=meta, cells=sorted(self.cells.values(), key=CellResult.sort_key))

    def finish(self) -> Path:
        """Write results.json, its history copy and the `latest` pointer; return the results path."""
        run = self.build_run()
        path = write_json_atomic(self.run_dir / "results.json", run.to_dict())
        run.path = path
        write_json_atomic(history_dir(self.results_dir) / f"{self.run_id}.json", run.to_dict())
        point_latest(self.results_dir, self.run_id)
        self.run = run
        return path


def _counts(cells: Iterable[CellResult]) -> dict[str, int]:
    counts = {o.value: 0 for o in Outcome}
    counts["mismatch"] = counts["flipped"] = 0
    for c in cells:
        counts[c.observation.outcome.value] += 1
        counts["mismatch"] += c.mismatch
        counts["flipped"] += bool(c.flip)
    return counts
