"""The run being recorded: `Recorder` builds one run from the cells that reach it, then writes it once."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import __version__
from harness.cell import Cell
from harness.judgement import Judgement, baseline_for_worker
from harness.outcome import Observation
from harness.results.journal import Journal
from harness.results.load import load_run
from harness.results.model import CellResult, Run, counts, new_run_id, utc_now
from harness.results.store import history_dir, point_latest, run_dir, write_json_atomic


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
        # every cell as it is recorded, so a killed controller keeps them (harness/results/journal.py)
        self.journal = Journal(self.run_dir, self.meta)
        self._journaling = False  # set by the first cell that ran

    @property
    def run_dir(self) -> Path:
        return run_dir(self.results_dir, self.run_id)

    def baseline_observation(self, cell_id: str) -> Observation | None:
        if self.baseline is None:
            return None
        found = self.baseline.cell(cell_id)
        return found.observation if found else None

    def baseline_for_workers(self) -> dict[str, dict[str, Any]]:
        """cell id -> the baseline observation as the judgement reads it (outcome and errnos):
        what an xdist worker needs to judge a cell exactly as this process would."""
        if self.baseline is None:
            return {}
        return {c.id: baseline_for_worker(c.observation) for c in self.baseline.cells}

    def set_node_facts(self, node: str, facts: dict[str, Any]) -> None:
        self.node_facts[node] = dict(facts)
        self.journal.facts(node, self.node_facts[node])

    def add_facts(self, node: str, facts: dict[str, Any]) -> None:
        """A node's facts as a cell's report brings them; the first ones of a node win."""
        if node not in self.node_facts:
            self.set_node_facts(node, facts)

    def update_meta(self, **values: Any) -> None:
        """E.g. inventory={"name":..., "path":...}; the first value of a key wins."""
        for key, value in values.items():
            self.meta.setdefault(key, value)

    def record(self, cell: Cell, observation: Observation, seq: int | None = None,
               judgement: Judgement | None = None) -> CellResult:
        """A cell run in this process; judged here against this recorder's baseline unless it was already."""
        return self.add(CellResult.from_cell(cell, observation, baseline=self.baseline_observation(cell.id),
                                             seq=seq, judgement=judgement))

    def add(self, result: CellResult, worker: str | None = None) -> CellResult:
        """Keep one cell's result. Its judgement is the one pytest reported (made where the cell ran,
        with this run's baseline: harness/judgement.py); one that arrives without is judged here."""
        result.baseline = self.baseline_observation(result.id)
        if result.judgement is None:
            result.judgement = result.rejudged(result.baseline)
        self.cells[result.id] = result
        if worker:
            self.workers.add(worker)
        if result.not_run and not self.has_results():
            return result  # journaled with the first cell that runs: cells that cannot run alone write nothing
        for waiting in [c for c in self.cells.values() if c.not_run and c is not result] if not self._journaling else []:
            self.journal.cell(waiting)
        self._journaling = True
        self.journal.cell(result)
        return result

    def has_results(self) -> bool:
        """At least one cell ran (documented cells that cannot run here alone make no run)."""
        return any(not c.not_run for c in self.cells.values())

    def build_run(self) -> Run:
        meta = dict(self.meta)
        meta["node_facts"] = dict(self.node_facts)
        meta["finished"] = utc_now()
        meta["workers"] = sorted(self.workers)
        meta["counts"] = counts(self.cells.values())
        # cells arrive in completion order; the run is stored in collection / document order
        return Run(run_id=self.run_id, meta=meta, cells=sorted(self.cells.values(), key=CellResult.sort_key))

    def finish(self) -> Path:
        """Write results.json, its history copy and the `latest` pointer; return the results path."""
        run = self.build_run()
        path = write_json_atomic(self.run_dir / "results.json", run.to_dict())
        run.path = path
        write_json_atomic(history_dir(self.results_dir) / f"{self.run_id}.json", run.to_dict())
        point_latest(self.results_dir, self.run_id)
        self.journal.remove()
        self.run = run
        return path

