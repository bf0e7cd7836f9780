"""Pass, fail, error or skip for one cell: observed vs documented expectation vs last run.

Pure, so the rules users depend on (E is a pytest ERROR, never a pass or a FAILED, so a broken
lab is told apart from a changed matrix; a flip always fails; unknown cells are recorded and
pass; an expected errno must be the observed one) are tested without a lab.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.cell import Cell
from harness.outcome import Observation, Outcome


@dataclass(frozen=True)
class Verdict:
    kind: Literal["pass", "fail", "error", "skip"]
    message: str


def judge(cell: Cell, observation: Observation, flip: str | None = None) -> Verdict:
    observed = observation.summary()
    where = f" [{cell.source}]" if cell.source else ""
    if observation.outcome is Outcome.E:
        since = f" (flipped since baseline: {flip})" if flip else ""
        return Verdict("error", f"E (harness or lab failure, not counted as X){since}: {observation.detail}")
    if flip:
        return Verdict("fail", f"flipped since baseline ({flip}): observed {observed}")
    if observation.outcome is Outcome.NA:
        if cell.expected in (None, Outcome.NA):
            return Verdict("skip", f"n/a: {observation.detail}")
        return Verdict("fail", f"expected {cell.expected.value}, observed n/a: {observation.detail}{where}")
    if cell.expected is None:
        return Verdict("pass", f"observed {observed} (no documented expectation)")
    expected = f"{cell.expected.value} {cell.expected_errno}" if cell.expected_errno else cell.expected.value
    if cell.expected is not observation.outcome:
        return Verdict("fail", f"expected {expected}, observed {observed}{where}")
    if cell.expected_errno and observation.outcome_errno != cell.expected_errno:
        return Verdict("fail", f"expected {expected}, observed {observed}: errno {observation.outcome_errno or 'none'} "
                               f"is not {cell.expected_errno}{where}")
    return Verdict("pass", f"observed {observed} as documented")
