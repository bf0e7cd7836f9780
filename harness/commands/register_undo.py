"""`hvsock-matrix unregister`: remove Hyper-V service GUIDs hvsock-matrix registered.

    hvsock-matrix unregister --inventory F [--scenario S ...] [--ports A-B ...]

Only what is provably ours goes: entries named "hvsock-matrix" that `hvsock-matrix register` made
for this user on this controller, or that a run of this controller left when it was killed (its
process is gone). A live run's entries, another controller's, untagged ones (an older harness, or
made by hand) and anyone else's are never touched; --scenario/--ports narrow the selection.
"""
from __future__ import annotations

import argparse
import sys

from harness.commands.selection import add_selection_arguments, load_selected_inventory, selected_guids
from harness.errors import NodeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from harness.agents import AgentPool
    from harness.hyperv.registration import hyperv_hosts, list_registered, removable_owners, unregister_guids

    inventory = load_selected_inventory(args.inventory)
    chosen = selected_guids(inventory, args.scenario, args.ports)
    failed = 0
    with AgentPool(inventory, mode="oneshot") as pool:
        for node in hyperv_hosts(inventory):
            agent = pool.agent(node.name)
            try:
                entries = list_registered(agent)
                owners = removable_owners(entries, set(chosen) if chosen else None)
                removed: list[str] = []
                for owner, guids in sorted(owners.items()):
                    removed += unregister_guids(agent, guids, owner)["removed"]
            except NodeError as err:
                print(f"hvsock-matrix: {err}", file=sys.stderr)
                failed += 1
                continue
            kept = [e for e in entries if (not chosen or e["guid"] in chosen) and e["guid"] not in removed]
            print(f"{node.name}: {len(removed)} removed, {len(kept)} kept (a live run's, another user's or "
                  f"controller's, untagged, or not registered by hvsock-matrix)")
    return 1 if failed else 0
