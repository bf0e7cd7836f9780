"""Errors a user can act on: one line, naming the file and line or the node. Never a traceback.

Every message is made one bounded line and scrubbed of secrets here, once, so no caller can
leak a password or print a megabyte-long value by accident (harness/secrets.py).
"""
from __future__ import annotations

from harness.secrets import scrub

MAX_MESSAGE_CHARS = 500


def clean_line(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line, at most `limit` characters, secrets masked."""
    s = " ".join(scrub(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


class HarnessError(Exception):
    """Base: the CLI and the pytest plugin print str(err) as one line and exit non-zero."""

    def __init__(self, *args: object):
        super().__init__(*(clean_line(a) if isinstance(a, str) else a for a in args))


class InputError(HarnessError):
    """A scenario or inventory file is wrong. `where` is "path:line"."""

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = clean_line(message)
        super().__init__(f"{where}: {message}")


class NodeError(HarnessError):
    """A node could not be reached or misbehaved; cells on it become E."""

    def __init__(self, node: str, message: str):
        self.node = node
        self.message = clean_line(message)
        super().__init__(f"node {node}: {message}")


class OutputError(HarnessError):
    """A file the tool was asked to write cannot be: "cannot write PATH: reason"."""

    def __init__(self, path: object, message: str):
        self.path = str(path)
        super().__init__(f"cannot write {path}: {message}")


class SafetyError(HarnessError):
    """Refused: AF_VSOCK on the controller itself, or traffic to a place the rules forbid."""
