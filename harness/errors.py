"""Errors a user can act on: one line, naming the file and line or the node. Never a traceback."""
from __future__ import annotations


class HarnessError(Exception):
    """Base: the CLI and the pytest plugin print str(err) as one line and exit non-zero."""


class InputError(HarnessError):
    """A scenario or inventory file is wrong. `where` is "path:line"."""

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


class NodeError(HarnessError):
    """A node could not be reached or misbehaved; cells on it become E."""

    def __init__(self, node: str, message: str):
        self.node = node
        self.message = message
        super().__init__(f"node {node}: {message}")


class SafetyError(HarnessError):
    """Refused: AF_VSOCK on the controller itself, or traffic to a place the rules forbid."""
