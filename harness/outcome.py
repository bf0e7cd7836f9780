"""What one cell produced: the outcome symbol and everything a user needs to trust it.

Kept free of any runner or transport import so reports, results and the pytest plugin
can all read observations without pulling in SSH or qemu.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Outcome(str, enum.Enum):  # noqa: UP042  not StrEnum: str() and format() stay as 0.2 wrote them
    """The symbols of the documents (O, X) plus what a harness must add.

    O  -- the payload came back as "Hello: <payload>".
    X  -- the connect failed (errno and elapsed time are kept).
    B  -- the server could not bind (its own result: the cell never reached connect).
    E  -- the harness or the lab failed; never counted as X.
    NA -- the cell has no meaning in this family (e.g. vsock has no CHILDREN).
    """

    O = "O"
    X = "X"
    B = "B"
    E = "E"
    NA = "n/a"

    @classmethod
    def parse(cls, text: str) -> Outcome:
        for member in cls:
            if member.value.lower() == str(text).strip().lower():
                return member
        if str(text).strip().lower() in ("na", "bind_failed", "bind-failed"):
            return cls.NA if str(text).strip().lower() == "na" else cls.B
        raise ValueError(f"unknown outcome {text!r} (expected O, X, B, E or n/a)")


def errno_of_outcome(outcome: str, errno_name: str | None, bind_errno_name: str | None) -> str | None:
    """The errno that goes with an outcome symbol: the connect errno of an X, the bind errno of a B.

    On plain fields, so readers of stored results (history) apply it without building observations.
    """
    if outcome == Outcome.X.value:
        return errno_name
    if outcome == Outcome.B.value:
        return bind_errno_name
    return None


@dataclass
class Observation:
    """One cell's measured result; serialisable with to_dict()/from_dict()."""

    outcome: Outcome
    errno_name: str | None = None  # e.g. "ECONNREFUSED", "WSAETIMEDOUT"
    errno: int | None = None
    elapsed_ms: float | None = None  # connect (+echo) time measured on the client node
    reply: str | None = None  # what the client read back
    bind_errno_name: str | None = None
    bind_errno: int | None = None
    detail: str = ""  # one human line: why E, why n/a, what the client saw
    commands: list[str] = field(default_factory=list)  # what was actually run / sent
    server_address: str | None = None  # resolved bind address, e.g. "cid=4294967295 port=19000"
    client_address: str | None = None  # resolved target address
    started_at: str | None = None  # ISO 8601 UTC
    duration_ms: float | None = None  # whole cell, controller side
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        data = dict(data)
        data["outcome"] = Outcome.parse(data["outcome"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def outcome_errno(self) -> str | None:
        """The errno that goes with the outcome: the connect errno of an X, the bind errno of a B."""
        return errno_of_outcome(self.outcome.value, self.errno_name, self.bind_errno_name)

    def summary(self) -> str:
        """The short form shown in a matrix cell or a failure message."""
        if self.outcome is Outcome.X:
            ms = f" {self.elapsed_ms:.0f}ms" if self.elapsed_ms is not None else ""
            return f"X {self.errno_name or '?'}{ms}"
        if self.outcome is Outcome.B:
            return f"B {self.bind_errno_name or '?'}"
        if self.outcome is Outcome.O:
            ms = f" {self.elapsed_ms:.0f}ms" if self.elapsed_ms is not None else ""
            return f"O{ms}"
        return f"{self.outcome.value} {self.detail}".strip()
