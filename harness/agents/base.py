"""What every probe agent shares: the contract (ProbeAgent), request tracing, the margins.

The agents return the probe's answers (harness/probe/protocol.py types) and the drivers branch on
them with the protocol's own Event/is_* helpers.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from harness import timeouts
from harness.node import Node
from harness.secrets import scrub

log = logging.getLogger("hvsock_matrix.probe")  # DEBUG: every request and answer


def _trace(node: str, direction: str, line: str) -> None:
    """One probe request (->) or answer (<-) at DEBUG, scrubbed like every text that leaves a cell."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s %s", node, direction, scrub(line))

DEFAULT_IDLE_TIMEOUT = timeouts.SESSION_IDLE  # the session exits by itself when the controller forgets it
MARGIN = timeouts.MARGIN  # a response may take this long beyond its operation's own timeout


class _SessionEnded(Exception):
    """The resident session died before answering (EOF on its channel)."""


# the defaults of the phase options: left out of the request so an ordinary cell's line is unchanged
_OPTION_DEFAULTS = {"phase": (None, "listening", "connect"), "unprivileged": (None, False),
                    "first_addr": (None,), "first_port": (None,)}


def given_options(options: dict[str, Any]) -> dict[str, Any]:
    """The phase options a cell really sets (probe/protocol.py REQUEST_FIELDS names)."""
    unknown = set(options) - set(_OPTION_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown probe options {sorted(unknown)}")
    return {k: v for k, v in options.items() if v not in _OPTION_DEFAULTS[k]}


def option_args(options: dict[str, Any]) -> list[str]:
    """The same options as probe CLI flags (one-shot agents)."""
    out: list[str] = []
    for key, value in given_options(options).items():
        flag = "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


class ProbeAgent:
    """The contract both agents share; every method returns the probe's JSON answer as a dict."""

    node: Node
    kind = "base"

    def listen(self, family: str, addr: str, port: int, service: str | None, timeout: float,
               count: int = 1, socket: str = "stream", **options: Any) -> dict:
        """options: phase (listening, bound, none, closed), unprivileged (bool): probe/listener.py."""
        raise NotImplementedError

    def connect(self, family: str, addr: str, port: int, service: str | None, payload: str,
                timeout: float, connect_timeout: float | None = None, socket: str = "stream", **options: Any) -> dict:
        """options: phase (connect, retry, bound, second-cid), first_addr, first_port: probe/client.py."""
        raise NotImplementedError

    def stop(self, listener: str) -> dict:
        raise NotImplementedError

    def info(self) -> dict:
        raise NotImplementedError

    def services(self, action: str, items: list[str] | None = None, owner: str | None = None) -> dict:
        """Hyper-V service registration on this node (probe/registry.py): register, unregister, list."""
        raise NotImplementedError

    def close(self) -> None: ...

    def lab_args(self) -> list[str]:
        return ["--lab-node"] if self.node.lab_node else []

    def describe(self, op: str, **fields: Any) -> str:
        """What this agent sends for `op` (for Observation.commands): a JSON request line."""
        return json.dumps(dict(op=op, **fields), sort_keys=True)
