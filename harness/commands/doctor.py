"""`hvsock-matrix doctor`: per node, a table of what a cell needs, its state, and the fix.

    hvsock-matrix doctor [--inventory F] [--scenario S ...] [--ports A-B ...] [--node N ...] [--socat]

--scenario/--ports name the run whose service GUIDs the Hyper-V hosts should have registered;
--socat (or a scenario using the socat driver) makes a missing socat >= 1.7.4 a failure.
Exit 1 when any check fails. The controller itself is never probed for vsock (not a lab node).
"""
from __future__ import annotations

import argparse

from harness.commands.selection import add_selection_arguments, load_selected_inventory, selected_guids


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    parser.add_argument("--node", action="append", default=[], metavar="NAME", help="only these nodes (repeatable)")
    parser.add_argument("--socat", action="store_true", help="the run uses the socat driver")


def _uses_socat(paths: list[str], inventory) -> bool:
    if not paths:
        return False
    from harness.scenario import load_cells

    return any(c.driver.kind == "socat" for p in paths for c in load_cells(p, inventory))


def run(args: argparse.Namespace) -> int:
    from harness.agents import AgentPool
    from harness.doctor.diagnose import diagnose
    from harness.doctor.table import render
    from harness.errors import InputError

    inventory = load_selected_inventory(args.inventory)
    unknown = [n for n in args.node if n not in inventory.nodes]
    if unknown:
        raise InputError("--node", f"not in {inventory.path}: {', '.join(unknown)}")
    guids = selected_guids(inventory, args.scenario, args.ports)
    needs_socat = args.socat or _uses_socat(args.scenario, inventory)
    with AgentPool(inventory) as pool:
        results = diagnose(inventory, pool, guids or None, needs_socat, args.node or None)
    return render(inventory, results)
