"""Drivers: how a cell's server and client are realised on their nodes.

`probe` (default) talks to the resident probe agents; `socat` runs socat as the documents did;
`command` runs user templates (e.g. the documents' ConsoleApp1.exe). Each driver turns one
CellPlan (a cell with its nodes and resolved addresses) into an Observation.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from harness.drivers.plan import REPLY_PREFIX, CellPlan

if TYPE_CHECKING:
    from harness.agents import AgentPool
    from harness.outcome import Observation

__all__ = ["DRIVERS", "REPLY_PREFIX", "CellDriver", "CellPlan", "get_driver"]


class CellDriver(Protocol):
    """What a driver module offers: one cell plan in, one observation out."""

    def run(self, plan: CellPlan, pool: AgentPool) -> Observation: ...


def _probe() -> CellDriver:
    from harness.drivers import probe
    return probe


def _socat() -> CellDriver:
    from harness.drivers import socat
    return socat


def _command() -> CellDriver:
    from harness.drivers import command
    return command


# driver kind -> its module, imported on first use (as pytest-testinfra's BACKENDS, typed)
DRIVERS: dict[str, Callable[[], CellDriver]] = {"probe": _probe, "socat": _socat, "command": _command}


def get_driver(kind: str) -> CellDriver:
    """The driver for `kind`; its run(plan, pool) -> Observation."""
    try:
        load = DRIVERS[kind]
    except KeyError:
        raise ValueError(f"unknown driver {kind!r} (expected {', '.join(DRIVERS)})") from None
    return load()
