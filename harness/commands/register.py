"""`hvsock-matrix register`: register a run's Hyper-V service GUIDs on every Windows host, by hand.

    hvsock-matrix register --inventory F [--scenario S ...] [--ports A-B ...]

A pytest run does this itself (RegistrationGuard) and removes what it added afterwards; this
command leaves the entries in place until `hvsock-matrix unregister`. Needs an administrator.
"""
from __future__ import annotations

import argparse
import sys

from harness.commands.selection import add_selection_arguments, load_selected_inventory, selected_guids
from harness.errors import InputError, NodeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from harness.hyperv.registration import hyperv_hosts, register_guids
    from harness.transports import close_inventory, open_transport

    inventory = load_selected_inventory(args.inventory)
    guids = selected_guids(inventory, args.scenario, args.ports)
    if not guids:
        raise InputError("register", "nothing to register: give --scenario FILE and/or --ports A-B")
    hosts = hyperv_hosts(inventory)
    if not hosts:
        print(f"no Windows host (role host, os windows) in {inventory.path}: nothing to do")
        return 0
    failed = 0
    try:
        for node in hosts:
            try:
                report = register_guids(open_transport(node, inventory), guids)
            except NodeError as err:
                print(f"hvsock-matrix: {err}", file=sys.stderr)
                failed += 1
                continue
            print(f"{node.name}: {len(report.added)} added, {len(report.present)} already registered")
    finally:
        close_inventory(inventory)
    return 1 if failed else 0
