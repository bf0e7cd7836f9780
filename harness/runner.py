"""Run one cell: resolve addresses, hand the cell to its driver, return an Observation.

Whatever goes wrong in the harness or the lab becomes E with a one-line reason (never X, never
an exception out of run_cell), so one broken node cannot stop a run: its cells turn E and the
others still finish.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

from harness import addresses, safety
from harness.agents import AgentPool
from harness.cell import Cell
from harness.drivers import CellPlan, get_driver
from harness.errors import HarnessError
from harness.node import Inventory
from harness.outcome import Observation, Outcome
from harness.secrets import scrub


def plan_cell(cell: Cell, inventory: Inventory) -> CellPlan | Observation:
    """The cell with its nodes and resolved addresses, or an n/a Observation saying why not."""
    if cell.skip_reason:
        return Observation(outcome=Outcome.NA, detail=cell.skip_reason)
    for name in (cell.server_on, cell.client_on):
        if name not in inventory.nodes:
            return Observation(outcome=Outcome.NA, detail=f"node {name} is not in inventory {inventory.name}")
    server, client = inventory.node(cell.server_on), inventory.node(cell.client_on)
    for node in (server, client):
        problem = addresses.check_port(cell.port, node.family)
        if problem:
            return Observation(outcome=Outcome.NA, detail=f"{node.name}: {problem}")
    bind = addresses.resolve_bind(cell.bind, server, inventory)
    if bind.is_na:
        return Observation(outcome=Outcome.NA, detail=f"bind {cell.bind} on {server.name}: {bind.na_reason}",
                           server_address=bind.display)
    target = addresses.resolve_target(cell.target, client, server, inventory)
    if target.is_na:
        return Observation(outcome=Outcome.NA, detail=f"target {cell.target} from {client.name}: {target.na_reason}",
                           server_address=bind.display, client_address=target.display)
    service = addresses.service_guid_for(cell.port, cell.service)
    plan = CellPlan(cell=cell, server=server, client=client, bind=bind, target=target, service=service)
    refused = safety.vsock_refusal(plan)  # every driver, before any transport is opened
    if refused:
        return Observation(outcome=Outcome.E, detail=refused, server_address=bind.display,
                           client_address=target.display)
    return plan


def run_cell(cell: Cell, inventory: Inventory, pool: AgentPool) -> Observation:
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    t0 = time.monotonic()
    plan = plan_cell(cell, inventory)
    if isinstance(plan, Observation):
        obs = plan
    else:
        try:
            obs = get_driver(cell.driver.kind).run(plan, pool)
        except HarnessError as exc:
            obs = Observation(outcome=Outcome.E, detail=str(exc), server_address=plan.bind.display,
                              client_address=plan.target.display)
        except Exception as exc:  # a harness bug must not sink the whole run; the cell says what happened
            obs = Observation(outcome=Outcome.E, detail=f"harness error {exc.__class__.__name__}: {exc}",
                              server_address=plan.bind.display, client_address=plan.target.display)
    obs.started_at = started
    obs.duration_ms = round((time.monotonic() - t0) * 1000, 3)
    return scrub_observation(obs)


def scrub_observation(obs: Observation) -> Observation:
    """Secrets out of every text field before the Observation reaches a record, log or report."""
    obs.detail = scrub(obs.detail)
    obs.commands = [scrub(c) for c in obs.commands]
    for name in ("reply", "server_address", "client_address"):
        value = getattr(obs, name)
        if isinstance(value, str):
            setattr(obs, name, scrub(value))
    obs.extra = {k: scrub(v) if isinstance(v, str) else v for k, v in obs.extra.items()}
    return obs
