"""The journal of a run in progress: every cell as the controller records it, so a killed run keeps them.

A controller killed with SIGKILL (the OOM killer, a CI timeout) never reaches `Recorder.finish`, and
results.json is written only there. So the Recorder also appends each cell to
`runs/<run-id>/journal.jsonl` the moment it records it: one JSON object a line, flushed to the
kernel at once (it survives the process; fsync is left to `finish`, a power cut is not the case
this answers). The first line is the run's meta; later lines are a cell (`{"cell": ...}`, the
results-file form) or a node's facts (`{"facts": {node: ...}}`). `finish` writes results.json and
its history copy, then removes the journal.

A run folder with a journal and no results.json is a run that did not finish: `load_journal`
reads it as a Run marked `meta["incomplete"]` (a line torn by the kill is dropped), so `report`,
`diff` and `--baseline RUN_ID` read it; it is never in history/, so `--baseline last` and
`history` skip it unless it is named.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import IO, Any

from harness import textfile
from harness.errors import InputError
from harness.results.model import SCHEMA, CellResult, Run, counts
from harness.results.reader import JOURNAL, MAX_BYTES, check_nesting, run_from_data

log = logging.getLogger("hvsock_matrix")


class Journal:
    """Append-only; opened on the first cell, so a run that records nothing leaves no folder."""

    def __init__(self, folder: Path, meta: dict[str, Any]):
        self.path = Path(folder) / JOURNAL
        self.meta = meta
        self._file: IO[str] | None = None
        self.error: OSError | None = None  # the journal could not be written: the run goes on without it

    def _write(self, record: dict[str, Any]) -> None:
        if self.error is not None:
            return
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)
                self._line({"meta": self.meta})
            self._line(record)
        except OSError as err:  # the results folder is unwritable: finish() says so, as it always did
            self.error = err
            log.warning("hvsock-matrix: cannot journal the run's cells in %s: %s", self.path, err)

    def _line(self, record: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        self._file.flush()  # in the kernel now: a SIGKILL after this line keeps it

    def cell(self, result: CellResult) -> None:
        self._write({"cell": result.to_dict()})

    def facts(self, node: str, facts: dict[str, Any]) -> None:
        self._write({"facts": {node: facts}})

    def remove(self) -> None:
        """The run is written whole: the journal has nothing more to keep."""
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def load_journal(path: Path) -> Run:
    """A killed run's journal as a Run marked incomplete; a bad line (other than a torn last one) is one line."""
    path = Path(path)
    text = textfile.read_text(path, MAX_BYTES, what="journal")
    lines = text.split("\n")
    meta: dict[str, Any] | None = None
    cells: dict[str, dict[str, Any]] = {}
    facts: dict[str, Any] = {}
    torn = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            check_nesting(line, f"{path}:{number}")
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError, InputError) as err:
            if number >= len(lines) - 1 and not text.endswith("\n"):
                torn += 1  # the line the kill cut short
                continue
            raise InputError(f"{path}:{number}", f"not a journal line: {str(err)[:120]}") from None
        if "meta" in record and meta is None and isinstance(record["meta"], dict):
            meta = dict(record["meta"])
        elif isinstance(record.get("cell"), dict):
            cells[str(record["cell"].get("id"))] = record["cell"]
        elif isinstance(record.get("facts"), dict):
            for node, value in record["facts"].items():
                facts.setdefault(node, value)
    if meta is None or "run_id" not in meta:
        raise InputError(str(path), "not an hvsock-matrix journal (no meta line with a run_id)")
    meta.pop("baseline_path", None)
    meta.setdefault("node_facts", facts)
    meta.update(incomplete=True, journal=str(path), torn_lines=torn)
    data = {"schema": SCHEMA, "run_id": meta["run_id"], "meta": meta, "cells": list(cells.values())}
    run = run_from_data(data, path)
    run.meta["counts"] = counts(run.cells)
    run.cells.sort(key=CellResult.sort_key)
    return run
