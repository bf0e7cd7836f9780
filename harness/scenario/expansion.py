"""From a parsed scenario and an inventory to cells: locations matched to nodes, pairs kept or
dropped (`pairs: related|any`), axes multiplied, explicit cells replacing their axes twins, ports
numbered. Pure: no file or node is touched here (docs/scenario-format.md has the rules).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from harness import addresses
from harness.cell import Cell, SocketType, variant_of
from harness.errors import InputError
from harness.node import Inventory, Node
from harness.scenario.model import SELECTORS, CellModel, Scenario, _key, _too_many, load_scenario, split_expect


def _matches(node: Node, selector: str) -> bool:
    if selector == "host" or selector == "vm":
        return node.role == selector
    os_name, _, role = selector.partition("-")
    return node.os == os_name and node.role == role


def _match_part(token: str, inventory: Inventory) -> list[Node]:
    if token in SELECTORS:
        return [n for n in inventory.nodes.values() if _matches(n, token)]
    node = inventory.nodes.get(token)
    return [node] if node is not None else []


def match_location(token: str, inventory: Inventory) -> list[Node]:
    """Nodes a location token names, in inventory order (`server` is handled by the caller)."""
    base, sep, parent_token = token.partition("@")
    nodes = _match_part(base, inventory)
    if sep:
        parents = {n.name for n in _match_part(parent_token, inventory)}
        nodes = [n for n in nodes if n.parent in parents]
    return nodes


def related(a: Node, b: Node) -> bool:
    """Same node, parent and child, or siblings (same parent); a network namespace of a node
    (inventory `of:`) is that node for this question: l1-local0 is related to l1 and to l1's guests."""
    a_name, b_name = a.machine, b.machine
    return (a_name == b_name or a.parent == b_name or b.parent == a_name
            or (a.parent is not None and a.parent == b.parent))


@dataclass(frozen=True)
class _Spec:
    """One cell before inventory expansion (tokens), from an explicit cell or the axes."""

    server_on: str
    bind: str
    client_on: str
    target: str
    loc: tuple  # where in the YAML, for messages
    cell: CellModel | None = None
    socket: str | None = None  # from the axes; explicit cells carry theirs in `cell`
    server_phase: str = "listening"  # from the axes; explicit cells carry theirs in `cell`
    client_phase: str = "connect"


def _pairs(spec: _Spec, inventory: Inventory | None, pairs_mode: str):
    """(server name, client name, skip_reason, server node, client node) for one spec."""
    client_token = spec.server_on if spec.client_on == "server" else spec.client_on
    if inventory is None:
        yield spec.server_on, client_token, "no inventory (give --inventory PATH)", None, None
        return
    servers = match_location(spec.server_on, inventory)
    if not servers:
        yield spec.server_on, client_token, f"inventory {inventory.name} has no {spec.server_on} node", None, None
        return
    for s in servers:
        if spec.client_on == "server":
            yield s.name, s.name, None, s, s
            continue
        clients = match_location(spec.client_on, inventory)
        if not clients:
            yield s.name, spec.client_on, f"inventory {inventory.name} has no {spec.client_on} node", s, None
            continue
        kept = clients if pairs_mode == "any" else [c for c in clients if related(s, c)]
        if not kept:
            yield (s.name, spec.client_on,
                   f"inventory {inventory.name} has no {spec.client_on} node related to {s.name} "
                   f"(same node, parent/child or sibling)", s, None)
            continue
        for c in kept:
            yield s.name, c.name, None, s, c


def _specs(sc: Scenario):
    m = sc.model
    for i, c in enumerate(m.cells):
        yield _Spec(c.server.on, c.server.bind, c.client.on, c.client.target, ("cells", i), c, None,
                    c.server.phase, c.client.phase)
    if m.axes is not None:
        a = m.axes
        # socket innermost: a cell's types come one after the other, so reports show them side by side
        for so, sb, co, ct, st, sp, cp in itertools.product(
                a.server_on, a.server_bind, a.client_on, a.client_target, a.socket or [m.socket],
                a.server_phase or ["listening"], a.client_phase or ["connect"]):
            yield _Spec(so, sb, co, ct, ("axes",), None, st, sp, cp)


def expand(scenario: Scenario, inventory: Inventory | None) -> list[Cell]:
    """All cells of a scenario against an inventory (None: every cell skipped, names = tokens)."""
    m = scenario.model
    out: list[Cell] = []
    index: dict[tuple, int] = {}
    where_cache: dict[tuple, str] = {}
    pairs_seen = 0
    missing = [n for n in m.needs_nodes if inventory is not None and n not in inventory.nodes]
    lacking = f"inventory {inventory.name} has no {missing[0]} node (needs_nodes)" if missing and inventory else None
    for spec in _specs(scenario):
        c = spec.cell
        driver = (c.driver if c is not None and c.driver is not None else m.driver)
        sock = spec.socket or (c.socket if c is not None and c.socket is not None else m.socket)
        expected, expected_errno = split_expect(c.expect if c is not None else None)
        unprivileged = c.server.unprivileged if c is not None else False
        variant = variant_of(spec.server_phase, spec.client_phase, unprivileged)
        if spec.loc not in where_cache:
            where_cache[spec.loc] = scenario.where(*spec.loc)
        defined_at = where_cache[spec.loc]
        for server_name, client_name, skip, s_node, c_node in _pairs(spec, inventory, m.pairs):
            pairs_seen += 1
            if pairs_seen > m.max_cells * 2:  # selectors x inventory nodes multiply the axes
                raise InputError(scenario.where("axes"), _too_many(None, m.max_cells))
            key = _key(server_name, spec.bind, client_name, spec.target, driver, sock, variant)
            if key in index:
                if c is not None:  # two explicit cells landed on the same nodes
                    first = out[index[key]].defined_at
                    raise InputError(defined_at, f"duplicate cell {out[index[key]].id} (also defined at {first})")
                continue  # the axes produce it again (overlapping selectors) or an explicit cell owns it
            cell_port = c.port if c is not None and c.port is not None else None
            port_loc: tuple[Any, ...] = (*spec.loc, "port")
            if cell_port is None:
                if m.port is not None:
                    cell_port, port_loc = m.port, ("port",)
                else:
                    assert m.port_base is not None  # parse_scenario refuses cells without a port
                    cell_port, port_loc = m.port_base + len(out), ("port_base",)
            families = {n.family for n in (s_node, c_node) if n is not None}
            family = "tcp" if "tcp" in families else None
            problem = addresses.check_port(cell_port, family)
            if problem:
                raise InputError(scenario.where(*port_loc), f"{problem} (cell {len(out)}: {server_name} <- {client_name})")
            index[key] = len(out)
            if len(out) >= m.max_cells:
                raise InputError(defined_at, _too_many(None, m.max_cells))
            out.append(Cell(
                scenario=m.scenario, server_on=server_name, bind=spec.bind, client_on=client_name,
                target=spec.target, port=cell_port,
                expected=expected, expected_errno=expected_errno, socket=cast(SocketType, sock),
                label=c.label if c is not None else None,
                source=c.source if c is not None else None,
                disputed=c.disputed if c is not None else False,
                note=c.note if c is not None else None,
                driver=driver,
                service=c.service if c is not None else None,
                payload=(c.payload if c is not None and c.payload is not None else m.payload),
                timeout=(c.timeout if c is not None and c.timeout is not None else m.timeout),
                skip_reason=skip or lacking, defined_at=defined_at,
                server_phase=spec.server_phase, client_phase=spec.client_phase, unprivileged=unprivileged,
                expect_peer=c.expect_peer if c is not None else None,
            ))
    return out


def load_cells(path: str | Path, inventory: Inventory | None) -> list[Cell]:
    return expand(load_scenario(path), inventory)
