"""Cell history across runs: "since when" and "how often", read fast from many results files.

A nightly team asks of each cell: what did it show night by night, does it agree with what it
should show, and is it stable, changed (a new steady outcome since run X), flaky (flips back and
forth) or failing for infrastructure reasons (E). KubeVirt's flake reports (7- and 28-day success
rates, Consecutive/Flaky patterns) are the model.

Reading is the cost: a thousand runs of 300 cells is hundreds of MB of JSON. Each file is parsed
once and only what history needs is kept (outcome, errno, expectation, kernels), never full
Observation objects; that summary is also kept next to it (history/.summary/<run-id>.json, tied
to the file's size and mtime), so the next reading parses a twentieth of the bytes
(benchmarks/bench_history.py).

Rules (the comparisons are harness/judgement.py's, the ones every run's verdict uses):
- a cell's *key* in a run is its outcome with the errno that goes with it (`X ECONNREFUSED`,
  judgement.stored_outcome_key); `.` = the cell was not in that run. Two runs' keys differ exactly
  when a run judged against the other would call it a flip (judgement.flip_between_keys: an errno
  missing on one side, from a run before errnos were kept, is no change).
- *agreement*: a run agrees when its key does not mismatch the cell's reference
  (judgement.key_agrees): the documented expectation (with its errno when one is documented), else
  the cell's latest non-E key. E never agrees. Rates count only runs that had the cell.
- *pattern* over the window, E set aside: no change = stable (infra when any E); one change =
  changed, since the first run of the new key; two or more = flaky. Only E = infra.
"""
from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness import textfile
from harness.cell import current_id
from harness.errors import InputError
from harness.judgement import flip_between_keys, key_agrees, stored_outcome_key
from harness.results.model import RUN_ID
from harness.results.reader import check_nesting

Pattern = Literal["stable", "changed", "flaky", "infra", "absent"]
PATTERNS: tuple[Pattern, ...] = ("flaky", "changed", "infra", "stable", "absent")  # the order reports use
RECENT = 7  # the short agreement window (runs), as KubeVirt's 7-day rate
DEFAULT_LAST = 30
MAX_FILE_BYTES = 256 * 1024 * 1024  # a results file larger than this is skipped (named), never read
ABSENT = "."


@dataclass(frozen=True)
class RunHead:
    """A run as a column head: id, when, kernels per node, and whether it finished."""

    run_id: str
    started: str | None
    kernels: dict[str, str]
    incomplete: bool = False

    @property
    def kernel_text(self) -> str:
        """`l1 6.1.0-57-amd64, vm21 6.12.95+deb12-amd64`; one release for all nodes is shown once."""
        releases = set(self.kernels.values())
        if len(releases) == 1:
            return next(iter(releases))
        return ", ".join(f"{node} {k}" for node, k in sorted(self.kernels.items()))


@dataclass
class RunSummary:
    """What history keeps of one results file."""

    head: RunHead
    keys: dict[str, str]  # cell id -> key ("O", "X ECONNREFUSED", "E", "n/a")
    cells: dict[str, dict[str, Any]]  # cell id -> scenario, label, expected, expected_errno


def summary_from_data(data: dict[str, Any]) -> RunSummary:
    """A results file's dict (harness/results.py Run.to_dict) -> RunSummary; KeyError/TypeError if malformed."""
    meta = data.get("meta") or {}
    kernels: dict[str, str] = {}
    for node, facts in (meta.get("node_facts") or {}).items():
        if isinstance(facts, dict) and facts.get("kernel"):
            kernels[str(node)] = str(facts["kernel"])
    head = RunHead(str(data["run_id"]), meta.get("started"), kernels, bool(meta.get("incomplete")))
    keys: dict[str, str] = {}
    cells: dict[str, dict[str, Any]] = {}
    for cell in data["cells"]:
        extra = cell["observation"].get("extra")
        if isinstance(extra, dict) and extra.get("not_run"):
            continue  # a documented cell this lab cannot run: no history of its own
        cell_id = current_id(cell["id"])
        keys[cell_id] = stored_outcome_key(cell["observation"])
        cells[cell_id] = {"scenario": cell.get("scenario"), "label": cell.get("label"),
                          "expected": cell.get("expected"), "expected_errno": cell.get("expected_errno")}
    return RunSummary(head, keys, cells)


def summary_from_run(run: Any) -> RunSummary:
    """The same from a loaded harness.results.Run (the run being written, not yet a file)."""
    return summary_from_data(run.to_dict())


SUMMARY_DIR = ".summary"  # history/.summary/<run-id>.json: what history keeps of each file, small
SUMMARY_VERSION = 1


def _summary_path(path: Path) -> Path:
    return path.parent / SUMMARY_DIR / path.name


def _source(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns]


def _compact(summary: RunSummary, source: list[int]) -> dict[str, Any]:
    head = summary.head
    return {"v": SUMMARY_VERSION, "source": source,
            "head": [head.run_id, head.started, head.kernels, head.incomplete],
            "cells": {cid: [summary.keys[cid], info["scenario"], info["label"], info["expected"],
                            info["expected_errno"]] for cid, info in summary.cells.items()}}


def _from_compact(data: dict[str, Any]) -> RunSummary:
    run_id, started, kernels, incomplete = data["head"]
    keys: dict[str, str] = {}
    cells: dict[str, dict[str, Any]] = {}
    for cid, (key, scenario, label, expected, expected_errno) in data["cells"].items():
        keys[cid] = key
        cells[cid] = {"scenario": scenario, "label": label, "expected": expected, "expected_errno": expected_errno}
    return RunSummary(RunHead(run_id, started, kernels, incomplete), keys, cells)


def _cached(path: Path, source: list[int]) -> RunSummary | None:
    """The summary kept for this very file (same size and mtime), else None."""
    try:
        data = json.loads(_summary_path(path).read_bytes())
        if data.get("v") == SUMMARY_VERSION and data.get("source") == source:
            return _from_compact(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        pass
    return None


def keep_summary(path: Path, summary: RunSummary, source: list[int] | None = None) -> None:
    """Best effort: a history folder we cannot write to is read in full next time, nothing worse."""
    target = _summary_path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        source = source or _source(os.stat(path))
        target.parent.mkdir(exist_ok=True)
        tmp.write_text(json.dumps(_compact(summary, source), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, target)  # no fsync: a summary lost in a crash is rebuilt from the file
    except OSError:
        tmp.unlink(missing_ok=True)


def read_summary(path: Path) -> RunSummary:
    """One results file (its kept summary when the file is unchanged); OSError / ValueError when unusable."""
    stat = os.stat(path)
    source = _source(stat)
    cached = _cached(path, source)
    if cached is not None:
        return cached
    try:  # the one bounded reader (harness/textfile.py) and the results files' nesting check
        text = textfile.read_text(path, MAX_FILE_BYTES, "results file")
        check_nesting(text, str(path))
        data = json.loads(text)
    except InputError as err:
        raise ValueError(err.message) from None
    if not isinstance(data, dict) or "run_id" not in data or not isinstance(data.get("cells"), list):
        raise ValueError("not an hvsock-matrix results file (no run_id / cells)")
    if not isinstance(data["run_id"], str) or not RUN_ID.fullmatch(data["run_id"]):
        raise ValueError("run_id is not a run id")
    try:
        summary = summary_from_data(data)
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"malformed cell: {err!r}") from None
    keep_summary(path, summary, source)
    return summary


@dataclass
class CellHistory:
    id: str
    scenario: str | None
    label: str | None
    expected: str | None  # the reference's text when documented: "X ECONNRESET", "O"
    keys: list[str]  # one per run of the window, oldest first; ABSENT when not in that run
    pattern: Pattern = "stable"
    since: str | None = None  # changed: the run id from which the new key holds
    flips: list[int] = field(default_factory=list)  # indexes of runs whose key differs from the run before
    agree_recent: tuple[int, int] = (0, 0)  # (agreeing runs, runs with the cell) over the last RECENT
    agree_all: tuple[int, int] = (0, 0)  # the same over the whole window
    reference: str | None = None

    @property
    def errors(self) -> int:
        return sum(k == "E" for k in self.keys)

    @property
    def latest(self) -> str:
        present = [k for k in self.keys if k != ABSENT]
        return present[-1] if present else ABSENT

    def agree_text(self, which: str = "all") -> str:
        agree, total = self.agree_recent if which == "recent" else self.agree_all
        return f"{100 * agree / total:.0f}% ({agree}/{total})" if total else "-"


@dataclass
class History:
    runs: list[RunHead]
    cells: list[CellHistory]  # flaky first, then changed, infra, stable
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) not read

    def of(self, pattern: Pattern) -> list[CellHistory]:
        return [c for c in self.cells if c.pattern == pattern]

    def cell(self, cell_id: str) -> CellHistory | None:
        return next((c for c in self.cells if c.id == cell_id), None)

    def counts(self) -> dict[str, int]:
        return {p: len(self.of(p)) for p in PATTERNS if p != "absent" or self.of(p)}

    def kernel_changed(self, index: int) -> bool:
        """Does run `index` boot other kernels than the run before it?"""
        return index > 0 and bool(self.runs[index].kernels) and self.runs[index].kernels != self.runs[index - 1].kernels


def classify(keys: list[str]) -> tuple[Pattern, int | None]:
    """(pattern, index of the run from which a changed cell's new key holds)."""
    measured = [(i, k) for i, k in enumerate(keys) if k not in (ABSENT, "E")]
    has_e = "E" in keys
    if not measured:
        return ("infra" if has_e else "absent"), None
    changes = [i for (_, a), (i, b) in itertools.pairwise(measured) if a != b and flip_between_keys(a, b)]  # equal keys never flip: skip the parse
    if not changes:
        return ("infra" if has_e else "stable"), None
    if len(changes) == 1:
        return "changed", changes[0]
    return "flaky", None


def cell_history(cell_id: str, info: dict[str, Any], keys: list[str], runs: list[RunHead]) -> CellHistory:
    expected = info.get("expected")
    reference: str | None
    if expected:
        errno = info.get("expected_errno")
        reference = f"{expected} {errno}" if errno else str(expected)
    else:
        measured = [k for k in keys if k not in (ABSENT, "E")]
        reference = measured[-1] if measured else None
    pattern, since_index = classify(keys)
    flips: list[int] = []
    previous: str | None = None
    for index, key in enumerate(keys):
        if key == ABSENT:
            continue
        if previous is not None and key != previous and flip_between_keys(previous, key):
            flips.append(index)
        previous = key

    def rate(window: list[str]) -> tuple[int, int]:
        present = [k for k in window if k != ABSENT]
        agree = sum(1 for k in present if reference is not None and k != "E" and (k == reference or key_agrees(k, reference)))
        return agree, len(present)

    return CellHistory(id=cell_id, scenario=info.get("scenario"), label=info.get("label"),
                       expected=reference if expected else None, keys=keys, pattern=pattern,
                       since=runs[since_index].run_id if since_index is not None else None, flips=flips,
                       agree_recent=rate(keys[-RECENT:]), agree_all=rate(keys), reference=reference)


def build_history(summaries: Iterable[RunSummary], skipped: list[tuple[str, str]] | None = None) -> History:
    """Runs oldest first -> one CellHistory per cell seen in any of them."""
    summaries = list(summaries)
    runs = [s.head for s in summaries]
    info: dict[str, dict[str, Any]] = {}
    for summary in summaries:  # the newest run's description of a cell wins (expectations change)
        info.update(summary.cells)
    cells = [cell_history(cell_id, data, [s.keys.get(cell_id, ABSENT) for s in summaries], runs)
             for cell_id, data in info.items()]
    order = {p: i for i, p in enumerate(PATTERNS)}
    cells.sort(key=lambda c: (order[c.pattern], str(c.scenario), c.id))
    return History(runs=runs, cells=cells, skipped=list(skipped or []))


def history_files(results_dir: Path) -> list[Path]:
    from harness.results import list_history

    return list_history(Path(results_dir))


def load_history(results_dir: Path | str, last: int = DEFAULT_LAST, include_incomplete: bool = True,
                 extra: Iterable[RunSummary] = ()) -> History:
    """The last `last` runs of `<results_dir>/history` (plus `extra` runs not yet written, newest)."""
    paths = history_files(Path(results_dir))
    extra = list(extra)
    extra_ids = {s.head.run_id for s in extra}
    paths = [p for p in paths if p.stem not in extra_ids]
    keep = max(0, last - len(extra))
    summaries: list[RunSummary] = []
    skipped: list[tuple[str, str]] = []
    for path in reversed(paths):  # newest first, until enough runs are read
        if len(summaries) >= keep:
            break
        try:
            summary = read_summary(path)
        except (OSError, ValueError) as err:
            skipped.append((str(path), str(err).splitlines()[0][:200]))
            continue
        if summary.head.incomplete and not include_incomplete:
            continue
        summaries.append(summary)
    summaries.reverse()
    return build_history(summaries + extra, skipped)
