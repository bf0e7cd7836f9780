"""What a results file holds: one `CellResult` per cell (the cell's description, its observation,
its baseline and its judgement) and the `Run` around them. Plain data with typed fields; the
files themselves are harness/results/store.py, their bounded reading harness/results/reader.py.
"""
from __future__ import annotations

import datetime as _dt
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cell import Cell, current_id
from harness.judgement import Judgement, judge
from harness.outcome import Observation, Outcome

SCHEMA = 1

# The cell fields a results file keeps; enough to lay out a matrix and explain a cell without the
# scenario file.
CELL_FIELDS = ("scenario", "label", "server_on", "bind", "client_on", "target", "port",
               "disputed", "source", "note", "service", "payload", "defined_at", "socket", "expected_errno",
               "variant", "expect_peer")

RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")  # new_run_id(): UTC time, then 3 random bytes


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id(now: _dt.datetime | None = None) -> str:
    """Sortable by time, unique across controllers started in the same second."""
    now = now or _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class CellResult:
    """One cell as stored in a results file: the cell's description plus what was observed and judged.

    `judgement` is computed once (harness/judgement.py) where pytest decides the cell and travels
    with it; a result built without one (an old file, `Recorder.record`) is judged on creation.
    """

    id: str
    observation: Observation
    expected: Outcome | None = None
    driver: str = "probe"
    scenario: str | None = None
    label: str | None = None
    server_on: str | None = None
    bind: str | None = None
    client_on: str | None = None
    target: str | None = None
    port: int | None = None
    disputed: bool = False
    source: str | None = None
    note: str | None = None
    service: str | None = None
    payload: str | None = None
    defined_at: str | None = None
    socket: str | None = None
    expected_errno: str | None = None
    variant: str | None = None  # "/server-bound/client-retry": the phases (cell.variant_of)
    expect_peer: str | None = None  # the accept() peer the cell expects ("client" or a CID)
    baseline: Observation | None = None  # the baseline run's observation of this cell, if any
    judgement: Judgement | None = None  # None only until __post_init__ judges the cell
    seq: int | None = None  # position in pytest's collection order, when known
    # earlier attempts of this cell in this run (pytest --reruns), oldest first, each as judged then:
    # {"observation": {...}, "verdict": "fail", "message": "...", "flip": ...}; the cell is its last attempt
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.judgement is None:
            self.judgement = judge(self, self.observation, self.baseline)

    @property
    def judged(self) -> Judgement:
        if self.judgement is None:  # only if someone cleared it
            self.judgement = judge(self, self.observation, self.baseline)
        return self.judgement

    @property
    def flip(self) -> str | None:
        """"O->X" (or an errno change) against the baseline the cell was judged with."""
        return self.judged.flip

    @property
    def mismatch(self) -> bool:
        """Observed differs from a known expectation (outcome, or the errno when one is expected)."""
        return self.judged.mismatch

    def rejudged(self, baseline: Observation | None) -> Judgement:
        """The judgement against another baseline (`report --baseline`, `diff`): the same function."""
        return judge(self, self.observation, baseline)

    @classmethod
    def from_cell(cls, cell: Cell, observation: Observation, baseline: Observation | None = None,
                  seq: int | None = None, judgement: Judgement | None = None) -> CellResult:
        return cls(
            id=cell.id, observation=observation, expected=cell.expected, driver=cell.driver.kind,
            scenario=cell.scenario, label=cell.label, server_on=cell.server_on, bind=cell.bind,
            client_on=cell.client_on, target=cell.target, port=cell.port, disputed=cell.disputed,
            source=cell.source, note=cell.note, service=cell.service, payload=cell.payload,
            defined_at=cell.defined_at, socket=cell.socket, expected_errno=cell.expected_errno,
            variant=cell.variant or None, expect_peer=cell.expect_peer,
            baseline=baseline, judgement=judgement, seq=seq)

    @property
    def not_run(self) -> str | None:
        """Why the cell could not run on this lab (`inventory lab-in-a-box has no windows-host node`):
        a documented cell kept in the run so its matrix is still shown, never a measurement."""
        reason = self.observation.extra.get("not_run") if isinstance(self.observation.extra, dict) else None
        return str(reason) if reason else None

    @property
    def flaky(self) -> bool:
        """Disagreed (fail or E) on an earlier attempt, agrees on the last: pytest's rerun-then-passed."""
        return bool(self.attempts) and self.judged.kind in ("pass", "skip")

    def attempt_summaries(self) -> list[str]:
        """`X ECONNREFUSED` per earlier attempt: what every report shows of a flaky cell."""
        return [Observation.from_dict(a["observation"]).summary() for a in self.attempts]

    def cell_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CELL_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id}
        data.update(self.cell_fields())
        data["driver"] = self.driver
        data["expected"] = self.expected.value if self.expected else None
        data["observation"] = self.observation.to_dict()
        data["baseline"] = self.baseline.to_dict() if self.baseline else None
        judgement = self.judged
        data["flip"] = judgement.flip
        data["verdict"] = judgement.kind
        data["message"] = judgement.message
        data["mismatch"] = judgement.mismatch
        data["seq"] = self.seq
        if self.attempts:
            data["attempts"] = self.attempts
            data["flaky"] = self.flaky
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        """A stored cell; files written before 0.3 carry no verdict and are judged here."""
        expected = data.get("expected")
        baseline = data.get("baseline")
        return cls(
            id=current_id(_text(data["id"], "id")),
            observation=Observation.from_dict(data["observation"]),
            expected=Outcome.parse(expected) if expected else None,
            driver=_text(data.get("driver") or "probe", "driver"),
            **{name: _field(name, data.get(name)) for name in CELL_FIELDS},
            baseline=Observation.from_dict(baseline) if baseline else None,
            judgement=Judgement.from_dict(data) if data.get("verdict") is not None else None,
            seq=_int_or_none(data.get("seq"), "seq"),
            attempts=_attempts(data.get("attempts")),
        )

    def sort_key(self) -> tuple[Any, ...]:
        """Collection order when known, else the documents' order (A2 before A10), then tokens."""
        label = [(0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", self.label or "") if part]
        return (self.seq is None, self.seq or 0, str(self.scenario), self.label is None, label,
                str(self.server_on), str(self.bind), str(self.client_on), str(self.target), self.driver)


def _attempts(value: Any) -> list[dict[str, Any]]:
    """Earlier attempts as stored; each must hold an observation and a verdict (ValueError otherwise)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("attempts is not a list")
    for attempt in value:
        if not isinstance(attempt, dict) or not isinstance(attempt.get("observation"), dict) \
                or attempt.get("verdict") not in ("pass", "fail", "error", "skip"):
            raise ValueError("an attempt needs an observation and a verdict")
        Observation.from_dict(attempt["observation"])
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected text, got {type(value).__name__}")
    return value


def _int_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    return value


def _field(name: str, value: Any) -> Any:
    """A stored cell field of the type CellResult declares (a file is input: checked, not trusted)."""
    if name == "disputed":
        return bool(value)
    if name == "port":
        return _int_or_none(value, name)
    if value is None:
        return None
    return _text(value, name)


@dataclass
class Run:
    """A loaded results file."""

    run_id: str
    meta: dict[str, Any]
    cells: list[CellResult]
    path: Path | None = None
    _by_id: dict[str, CellResult] = field(default_factory=dict, init=False, repr=False, compare=False)

    def cell(self, cell_id: str) -> CellResult | None:
        return self.index().get(cell_id)

    def index(self) -> dict[str, CellResult]:
        """cell id -> result (rebuilt when cells were added since)."""
        if len(self._by_id) != len(self.cells):
            self._by_id = {c.id: c for c in self.cells}
        return self._by_id

    @property
    def flips(self) -> list[CellResult]:
        return [c for c in self.cells if c.flip]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "run_id": self.run_id, "meta": self.meta,
                "cells": [c.to_dict() for c in self.cells]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> Run:
        return cls(run_id=data["run_id"], meta=data.get("meta") or {},
                   cells=[CellResult.from_dict(c) for c in data.get("cells") or []], path=path)


def counts(cells: Iterable[CellResult]) -> dict[str, int]:
    """Per outcome, plus mismatches and flips: a run's meta["counts"]."""
    totals = {o.value: 0 for o in Outcome}
    totals["mismatch"] = totals["flipped"] = totals["flaky"] = totals["not run"] = 0
    for c in cells:
        if c.not_run:
            totals["not run"] += 1
            continue
        totals[c.observation.outcome.value] += 1
        totals["mismatch"] += c.mismatch
        totals["flipped"] += bool(c.flip)
        totals["flaky"] += c.flaky
    return totals
