"""The one judgement of a cell: its flip since the baseline, its mismatch, its verdict.

Every output reads what `judge` returns, never a rule of its own: pytest's pass/fail/error/skip
(harness/plugin.py), JUnit properties, results.json, the terminal, Markdown and HTML matrices and
`diff`. It runs where pytest decides the cell (an xdist worker or the only process) from the whole
baseline observation the controller hands it (`baseline_for_worker`: outcome AND errnos), and on the
controller only for results that arrive without one (`Recorder.record`, files older than 0.3) or
against another baseline (`report --baseline`, `diff`): same function, same inputs, same answer.

Rules users depend on: E is a pytest ERROR, never a pass or a FAILED, so a broken lab is told apart
from a changed matrix; a flip always fails, and an errno change of the same X or B is a flip; unknown
cells are recorded and pass; an expected errno must be the observed one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from harness.outcome import Observation, Outcome, errno_of_outcome

VerdictKind = Literal["pass", "fail", "error", "skip"]
VERDICT_KINDS: tuple[VerdictKind, ...] = ("pass", "fail", "error", "skip")

# The fields of a baseline observation the judgement reads; all a worker is sent per cell.
JUDGED_FIELDS = ("outcome", "errno_name", "errno", "bind_errno_name", "bind_errno")


class Expected(Protocol):
    """What was documented for a cell: a harness.cell.Cell or a stored harness.results.CellResult."""

    @property
    def expected(self) -> Outcome | None: ...

    @property
    def expected_errno(self) -> str | None: ...

    @property
    def source(self) -> str | None: ...


@dataclass(frozen=True)
class Judgement:
    """A cell's verdict for pytest and every report, with the two facts it rests on."""

    kind: VerdictKind  # pytest: pass, fail (FAILED), error (ERROR in setup), skip (SKIPPED)
    message: str  # the one line pytest prints and reports show
    flip: str | None = None  # "O->X" or "X ECONNREFUSED->X ETIMEDOUT" against the baseline
    mismatch: bool = False  # observed differs from a documented expectation

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.kind, "message": self.message, "flip": self.flip, "mismatch": self.mismatch}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judgement:
        kind = data.get("verdict")
        if kind not in VERDICT_KINDS:
            raise ValueError(f"unknown verdict {kind!r}")
        flip = data.get("flip")
        return cls(kind=kind, message=str(data.get("message") or ""),
                   flip=str(flip) if flip else None, mismatch=bool(data.get("mismatch")))


def baseline_for_worker(observation: Observation) -> dict[str, Any]:
    """The part of a baseline observation the judgement reads, as plain data for workerinput."""
    data = observation.to_dict()
    return {name: data[name] for name in JUDGED_FIELDS}


def judged_part(observation: Observation | None) -> Observation | None:
    """The baseline as the judgement sees it: the controller and a worker read the same fields."""
    if observation is None:
        return None
    return Observation.from_dict(baseline_for_worker(observation))


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


def outcome_key(observation: Observation) -> str:
    """`X ECONNREFUSED`, `B EADDRINUSE`, `O`, `E`, `n/a`: what a flip compares, as text (history strips)."""
    errno = observation.outcome_errno
    return f"{observation.outcome.value} {errno}" if errno else observation.outcome.value


def stored_outcome_key(observation: dict[str, Any]) -> str:
    """outcome_key of a stored observation (a results file's dict), without building an Observation."""
    outcome = str(observation.get("outcome"))
    errno = errno_of_outcome(outcome, observation.get("errno_name"), observation.get("bind_errno_name"))
    return f"{outcome} {errno}" if errno else outcome


def flip_between_keys(before: str, after: str) -> str | None:
    """flip_between for two outcome_key texts, so a history of keys flips exactly where a run does."""
    return flip_between(_parse_key(before), _parse_key(after))


@dataclass(frozen=True)
class _Documented:
    expected: Outcome | None
    expected_errno: str | None
    source: str | None = None


def key_agrees(key: str, reference: str) -> bool:
    """An outcome_key agrees with a documented reference key (`X`, `X ECONNRESET`) as `mismatch` judges:
    the same outcome, and the reference's errno when it names one."""
    outcome, _, errno = reference.partition(" ")
    return not mismatch(_Documented(Outcome.parse(outcome), errno or None), _parse_key(key))


def _parse_key(key: str) -> Observation:
    outcome, _, errno = key.partition(" ")
    return Observation(Outcome.parse(outcome), errno_name=errno or None, bind_errno_name=errno or None)


def mismatch(expected: Expected, observation: Observation) -> bool:
    """Observed differs from a known expectation (outcome, or the errno when one is expected, or
    accept()'s peer when the cell names it: `expect_peer`, checked by the probe driver)."""
    if peer_mismatch(observation):
        return True
    if expected.expected is None:
        return False
    if observation.outcome is not expected.expected:
        return True
    return bool(expected.expected_errno) and observation.outcome_errno != expected.expected_errno


def peer_mismatch(observation: Observation) -> str | None:
    """`accept() saw peer 1, the cell expects 21` when an echoed cell's peer is not the expected one."""
    peer = observation.extra.get("peer_check") if observation.outcome is Outcome.O else None
    if not isinstance(peer, dict) or peer.get("seen") == peer.get("expected"):
        return None
    return f"accept() saw peer CID {peer.get('seen')}, the cell expects {peer.get('expected')} ({peer.get('as')})"


def judge(expected: Expected, observation: Observation, baseline: Observation | None = None) -> Judgement:
    """The verdict of one observation against its documented expectation and the baseline's observation."""
    flip = flip_between(judged_part(baseline), observation)
    differs = mismatch(expected, observation)
    kind, message = _verdict(expected, observation, flip)
    return Judgement(kind, message, flip, differs)


def _verdict(expected: Expected, observation: Observation, flip: str | None) -> tuple[VerdictKind, str]:
    observed = observation.summary()
    where = f" [{expected.source}]" if expected.source else ""
    documented = expected.expected
    if observation.outcome is Outcome.E:
        since = f" (flipped since baseline: {flip})" if flip else ""
        return "error", f"E (harness or lab failure, not counted as X){since}: {observation.detail}"
    if flip:
        return "fail", f"flipped since baseline ({flip}): observed {observed}"
    if observation.outcome is Outcome.NA:
        if documented in (None, Outcome.NA):
            return "skip", f"n/a: {observation.detail}"
        assert documented is not None
        return "fail", f"expected {documented.value}, observed n/a: {observation.detail}{where}"
    wrong_peer = peer_mismatch(observation)
    if wrong_peer:
        return "fail", f"{wrong_peer}{where}"
    if documented is None:
        return "pass", f"observed {observed} (no documented expectation)"
    errno = expected.expected_errno
    text = f"{documented.value} {errno}" if errno else documented.value
    if documented is not observation.outcome:
        return "fail", f"expected {text}, observed {observed}{where}"
    if errno and observation.outcome_errno != errno:
        return "fail", (f"expected {text}, observed {observed}: errno {observation.outcome_errno or 'none'} "
                        f"is not {errno}{where}")
    return "pass", f"observed {observed} as documented"
