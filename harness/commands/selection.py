"""What the register / unregister / doctor commands act on: an inventory and a run's service GUIDs.

Command-line plumbing shared by those three commands (it reads scenario and inventory files and
asks the lab where its inventory is), so it lives with them, above everything it uses.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import InputError

DEFAULT_INVENTORY = Path("inventory") / "lab-in-a-box.yaml"


def add_selection_arguments(parser: argparse.ArgumentParser, inventory_required: bool = False) -> None:
    parser.add_argument("--inventory", metavar="FILE", required=inventory_required,
                        help="inventory file (default: inventory/lab-in-a-box.yaml, or the running lab's)")
    parser.add_argument("--scenario", metavar="FILE", action="append", default=[],
                        help="a scenario whose cells' service GUIDs are meant (repeatable)")
    parser.add_argument("--ports", metavar="A-B", action="append", default=[],
                        help="a vsock port range whose template GUIDs are meant, e.g. 20000-20199 (repeatable)")


def inventory_path(arg: str | None) -> Path:
    """--inventory, else inventory/lab-in-a-box.yaml, else the running lab-in-a-box's inventory."""
    if arg:
        return Path(arg)
    if DEFAULT_INVENTORY.exists():
        return DEFAULT_INVENTORY
    try:
        from harness.lab import lab_is_up
        from harness.lab.paths import LabPaths

        if lab_is_up():
            return LabPaths.default().inventory
    except ImportError:
        pass
    raise InputError("--inventory", "no inventory given and no lab-in-a-box running (hvsock-matrix lab up)")


def load_selected_inventory(arg: str | None):
    from harness.inventory import load_inventory

    return load_inventory(inventory_path(arg))


def selected_guids(inventory, scenarios: list[str], ports: list[str]) -> set[str]:
    """GUIDs of the given scenarios' cells (against the inventory) and port ranges."""
    from harness.hyperv.registration import guids_for_cells, guids_for_ports, parse_port_range

    guids: set[str] = set()
    for text in ports:
        try:
            first, last = parse_port_range(text)
        except ValueError as err:
            raise InputError("--ports", str(err)) from None
        guids |= guids_for_ports(first, last)
    if scenarios:
        from harness.scenario import load_cells

        for path in scenarios:
            guids |= guids_for_cells(load_cells(path, inventory), inventory)
    return guids
