"""`hvsock-matrix unregister`: remove Hyper-V service GUIDs hvsock-matrix registered.

    hvsock-matrix unregister --inventory F [--scenario S ...] [--ports A-B ...]

Without --scenario/--ports every entry whose ElementName is "hvsock-matrix" goes (e.g. after a
run was killed before it could clean up). Entries someone else made are never removed.
"""
from __future__ import annotations

import argparse
import sys

from harness.commands.selection import add_selection_arguments, load_selected_inventory, selected_guids
from harness.errors import NodeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from harness.hyperv.registration import ELEMENT_NAME, hyperv_hosts, list_registered, unregister_guids
    from harness.transports import close_inventory, open_transport

    inventory = load_selected_inventory(args.inventory)
    chosen = selected_guids(inventory, args.scenario, args.ports)
    failed = 0
    try:
        for node in hyperv_hosts(inventory):
            try:
                transport = open_transport(node, inventory)
                guids = chosen or {g for g, name in list_registered(transport).items() if name == ELEMENT_NAME}
                states = unregister_guids(transport, guids) if guids else {"removed": [], "absent": [], "foreign": []}
            except NodeError as err:
                print(f"hvsock-matrix: {err}", file=sys.stderr)
                failed += 1
                continue
            print(f"{node.name}: {len(states['removed'])} removed, {len(states['foreign'])} kept "
                  f"(not registered by hvsock-matrix), {len(states['absent'])} not registered")
    finally:
        close_inventory(inventory)
    return 1 if failed else 0
