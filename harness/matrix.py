"""From a run's flat list of cells to what every report shows: one grid per scenario.

Rows are `server node:bind`, columns `client node:target` (plus `/seqpacket` when the socket type
is not stream, `@driver` when not the probe), both in the order the scenario produced them, so the
documents' case order survives; a target's socket types sit in adjacent columns, side by side. Each
position knows the documented expectation, the observation, the baseline observation and the
last runs' outcomes; `flips` and `mismatches` are what every output lists first.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.judgement import Judgement
from harness.outcome import Observation, Outcome
from harness.results import CellResult, Run


@dataclass
class MatrixCell:
    """One position of a grid; its flip and mismatch are its judgement's (harness/judgement.py)."""

    result: CellResult
    judgement: Judgement  # the stored one, or the same function against another baseline
    baseline: Observation | None = None
    history: list[Outcome | None] = field(default_factory=list)  # oldest first, None = absent

    @property
    def id(self) -> str:
        return self.result.id

    @property
    def expected(self) -> Outcome | None:
        return self.result.expected

    @property
    def observed(self) -> Observation:
        return self.result.observation

    @property
    def mismatch(self) -> bool:
        return self.judgement.mismatch

    @property
    def flip(self) -> str | None:
        return self.judgement.flip

    @property
    def flipped(self) -> bool:
        return self.flip is not None


@dataclass
class Matrix:
    scenario: str
    rows: list[str] = field(default_factory=list)  # "server:bind"
    columns: list[str] = field(default_factory=list)  # "client:target"
    grid: dict[tuple[str, str], list[MatrixCell]] = field(default_factory=dict)

    def at(self, row: str, column: str) -> list[MatrixCell]:
        return self.grid.get((row, column), [])

    def cells(self) -> Iterable[MatrixCell]:
        for entries in self.grid.values():
            yield from entries


@dataclass
class MatrixReport:
    """Everything a report renders, computed once."""

    run: Run
    matrices: list[Matrix]
    baseline: Run | None = None
    history: list[Run] = field(default_factory=list)  # older runs, oldest first (not incl. run)

    @property
    def flips(self) -> list[MatrixCell]:
        return [c for m in self.matrices for c in m.cells() if c.flipped]

    @property
    def flaky(self) -> list[MatrixCell]:
        """Cells that disagreed on an earlier attempt and agreed on a rerun (pytest --reruns)."""
        return [c for m in self.matrices for c in m.cells() if c.result.flaky]

    @property
    def mismatches(self) -> list[MatrixCell]:
        return [c for m in self.matrices for c in m.cells() if c.mismatch]

    def cell(self, cell_id: str) -> MatrixCell | None:
        for m in self.matrices:
            for c in m.cells():
                if c.id == cell_id:
                    return c
        return None

    @property
    def baseline_label(self) -> str | None:
        if self.baseline is not None:
            return self.baseline.run_id
        info = self.run.meta.get("baseline") or {}
        return info.get("run_id")


def row_key(result: CellResult) -> str:
    return f"{result.server_on}:{result.bind}"


def column_key(result: CellResult) -> str:
    suffix = "" if result.socket in (None, "stream") else f"/{result.socket}"
    suffix += result.variant or ""  # /server-bound, /client-retry ...: next to the plain cell
    suffix += "" if result.driver in (None, "probe") else f"@{result.driver}"
    return f"{result.client_on}:{result.target}{suffix}"


def _side_by_side(columns: list[str]) -> list[str]:
    """Columns in first-seen order, each target's socket types next to each other."""
    groups: dict[str, list[str]] = {}
    for column in columns:
        head, _, tail = column.partition("/")
        base = head + tail[tail.index("@"):] if "@" in tail else head
        groups.setdefault(base, []).append(column)
    return [column for group in groups.values() for column in group]


def build_report(run: Run, baseline: Run | None = None, history: Iterable[Run] = ()) -> MatrixReport:
    """Lay the run out. Without an explicit baseline each cell keeps the judgement it was recorded
    with; with one, each cell is judged again against it by the same function."""
    history = list(history)
    matrices: dict[str, Matrix] = {}
    seen: dict[str, tuple[set[str], set[str]]] = {}
    past = [h.index() for h in history]
    for result in run.cells:
        scenario = result.scenario or "?"
        if scenario not in matrices:
            matrices[scenario] = Matrix(scenario)
            seen[scenario] = (set(), set())
        matrix, (rows, columns) = matrices[scenario], seen[scenario]
        row, column = row_key(result), column_key(result)
        if row not in rows:
            rows.add(row)
            matrix.rows.append(row)
        if column not in columns:
            columns.add(column)
            matrix.columns.append(column)
        if baseline is not None:
            found = baseline.cell(result.id)
            base = found.observation if found else None
            judgement = result.rejudged(base)
        else:
            base, judgement = result.baseline, result.judged
        strip = [(index[result.id].observation.outcome if result.id in index else None)
                 for index in past]
        matrix.grid.setdefault((row, column), []).append(MatrixCell(result, judgement, base, strip))
    for matrix in matrices.values():
        matrix.columns = _side_by_side(matrix.columns)
    return MatrixReport(run=run, matrices=list(matrices.values()), baseline=baseline, history=history)
