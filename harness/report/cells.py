"""How one matrix cell reads in words: shared by the HTML, Markdown, terminal and diff outputs.

Keeping the wording in one place is what makes the terminal matrix, the diff command and the
HTML report agree cell for cell.
"""
from __future__ import annotations

from typing import Any

from harness.matrix import MatrixCell
from harness.outcome import Observation, Outcome

MEANING = {
    Outcome.O: "echo came back",
    Outcome.X: "connect failed",
    Outcome.B: "bind failed",
    Outcome.E: "harness or lab failure (not counted as X)",
    Outcome.NA: "not applicable in this family",
}
# one character per past run in the history strip; "." = the cell was not in that run
STRIP_CHAR = {Outcome.O: "O", Outcome.X: "X", Outcome.B: "B", Outcome.E: "E", Outcome.NA: "-"}
ABSENT = "."


def css_class(outcome: Outcome) -> str:
    return "NA" if outcome is Outcome.NA else outcome.value


def strip(cell: MatrixCell) -> str:
    """Past runs oldest first, then this run."""
    past = "".join(STRIP_CHAR[o] if o is not None else ABSENT for o in cell.history)
    return past + STRIP_CHAR[cell.observed.outcome]


def observed_line(obs: Observation) -> str:
    """`X ECONNREFUSED (111) 3 ms` - the errno number included when known."""
    parts = [obs.outcome.value]
    if obs.outcome is Outcome.B:
        if obs.bind_errno_name or obs.bind_errno is not None:
            parts.append(_errno(obs.bind_errno_name, obs.bind_errno))
    elif obs.errno_name or obs.errno is not None:
        parts.append(_errno(obs.errno_name, obs.errno))
    phase = obs.extra.get("phase") if isinstance(obs.extra, dict) else None
    if obs.outcome in (Outcome.X, Outcome.B) and phase not in (None, "connect", "bind"):
        parts.append(f"at {phase}")  # a socket type refused by socket(), a datagram never answered...
    if obs.elapsed_ms is not None:
        parts.append(ms_text(obs.elapsed_ms))
    return " ".join(parts)


def ms_text(ms: float) -> str:
    """`3 ms`; `<1 ms` rather than a misleading `0 ms` for sub-millisecond loopback connects."""
    return "<1 ms" if ms < 0.5 else f"{ms:.0f} ms"


def _errno(name: str | None, number: int | None) -> str:
    if name and number is not None:
        return f"{name} ({number})"
    return name or str(number)


def short(cell: MatrixCell) -> str:
    """The small line under the symbol: errno and time, or why E / n/a."""
    obs = cell.observed
    if obs.outcome in (Outcome.X, Outcome.B):
        return observed_line(obs)[2:]
    if obs.outcome is Outcome.O:
        return ms_text(obs.elapsed_ms) if obs.elapsed_ms is not None else ""
    return obs.detail[:60]


def expected_text(cell: MatrixCell) -> str:
    """"X ECONNRESET" when the errno is expected too, "O", or "?" when unknown."""
    if cell.expected is None:
        return "?"
    errno = cell.result.expected_errno
    return f"{cell.expected.value} {errno}" if errno else cell.expected.value


def title(cell: MatrixCell) -> str:
    """The hover text: enough to judge the cell without opening anything."""
    result, obs = cell.result, cell.observed
    lines = [cell.id,
             f"observed: {observed_line(obs)}",
             "expected: " + (expected_text(cell) if cell.expected is not None else "unknown")
             + (" - DIFFERS" if cell.mismatch else "")
             + (" - disputed" if result.disputed else "")]
    if cell.baseline is not None:
        lines.append(f"baseline: {cell.baseline.outcome.value}"
                     + (f" - CHANGED {cell.flip}" if cell.flipped else " - unchanged"))
    if result.attempts:
        lines.append("earlier attempts (reruns): " + ", ".join(result.attempt_summaries())
                     + (" - FLAKY" if result.flaky else ""))
    if obs.reply is not None:
        lines.append(f"reply: {obs.reply!r}")
    if obs.detail:
        lines.append(f"detail: {obs.detail}")
    if result.source:
        lines.append(f"source: {result.source}")
    if result.note:
        lines.append(f"note: {result.note}")
    return "\n".join(lines)


def details(cell: MatrixCell) -> dict[str, Any]:
    """What the click panel adds to the hover text (only non-empty fields, to keep files small)."""
    obs = cell.observed
    out: dict[str, Any] = {}
    for key, value in (("commands", obs.commands), ("server", obs.server_address),
                       ("client", obs.client_address), ("started", obs.started_at),
                       ("cell ms", obs.duration_ms), ("port", cell.result.port),
                       ("defined at", cell.result.defined_at), ("extra", obs.extra)):
        if value not in (None, "", [], {}):
            out[key] = value
    return out


def change_line(cell: MatrixCell) -> str:
    """One line for the lists of flips and mismatches printed before the matrices."""
    exp = f"expected {expected_text(cell)}"
    flip = cell.flip
    base = f"{flip.split('->')[0]} -> " if flip else ""
    return f"{cell.id}: {base}{observed_line(cell.observed)} ({exp})"


def incomplete_note(meta: dict[str, Any]) -> str | None:
    """The line every output shows for a run that did not finish (read from its journal)."""
    if not meta.get("incomplete"):
        return None
    return ("INCOMPLETE: the controller stopped before the run finished; these are the cells it had "
            f"recorded ({meta.get('journal') or 'journal'})")


def flaky_line(cell: MatrixCell) -> str:
    """`id: X ECONNREFUSED, then O on rerun 1`: every attempt shown, an E included, never hidden."""
    earlier = ", ".join(cell.result.attempt_summaries())
    return f"{cell.id}: {earlier}, then {observed_line(cell.observed)} on rerun {len(cell.result.attempts)}"

