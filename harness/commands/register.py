"""`hvsock-matrix register`: register a run's Hyper-V service GUIDs on every Windows host, by hand.

    hvsock-matrix register --inventory F [--scenario S ...] [--ports A-B ...]

A pytest run does this itself (RegistrationGuard) and removes what it added afterwards; this
command leaves the entries in place, tagged `manual:<user>@<host>`, until `hvsock-matrix unregister`
from the same user and controller. The host's probe writes them (winreg); needs an administrator.
"""
from __future__ import annotations

import argparse
import sys

from harness.commands.selection import add_selection_arguments, load_selected_inventory, selected_guids
from harness.errors import InputError, NodeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from harness.agents import AgentPool
    from harness.hyperv.registration import hyperv_hosts, manual_owner, register_guids

    inventory = load_selected_inventory(args.inventory)
    guids = selected_guids(inventory, args.scenario, args.ports)
    if not guids:
        raise InputError("register", "nothing to register: give --scenario FILE and/or --ports A-B")
    hosts = hyperv_hosts(inventory)
    if not hosts:
        print(f"no Windows host (role host, os windows) in {inventory.path}: nothing to do")
        return 0
    failed = 0
    with AgentPool(inventory, mode="oneshot") as pool:
        for node in hosts:
            try:
                report = register_guids(pool.agent(node.name), guids, manual_owner())
            except NodeError as err:
                print(f"hvsock-matrix: {err}", file=sys.stderr)
                failed += 1
                continue
            print(f"{node.name}: {len(report.added)} added, {len(report.present)} already registered")
    return 1 if failed else 0
