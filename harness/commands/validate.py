"""`hvsock-matrix validate FILE...`: check scenario and inventory files without running anything.

Files are told apart by their top-level key (`scenario:` or `inventory:`); a directory means
every *.yaml/*.yml in it, recursively (FIFOs, sockets and devices with such names are named as
errors, never opened); a directory with none is an error. Prints "ok PATH (N cells)" / "ok PATH (N nodes)" per good file and
one "PATH:LINE: message" line on stderr per bad file; exit 1 when any file is bad.
With --inventory, scenarios are also expanded against that inventory (node names, skips,
tcp port ranges).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import yamlfile
from harness.errors import HarnessError, InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="scenario or inventory files (or directories)")
    parser.add_argument("--inventory", metavar="PATH", help="also expand scenarios against this inventory")


def _expand_paths(names: list[str]) -> list[str | InputError]:
    """Files to check, in order; an InputError stands for a folder with nothing to check."""
    out: list[str | InputError] = []
    for name in names:
        p = Path(name)
        if p.is_dir():
            found = [str(f) for f in sorted(p.rglob("*")) if f.suffix in (".yaml", ".yml") and not f.is_dir()]
            out.extend(found or [InputError(name, "no *.yaml or *.yml file in this folder")])
        else:
            out.append(name)
    return out


def check_file(path: str, inventory=None) -> str:
    """The "ok" line for one file; raises HarnessError (one line) when it is bad."""
    from harness.inventory import parse_inventory
    from harness.scenario import expand, parse_scenario

    data = yamlfile.load(path)
    kind = yamlfile.top_level_kind(path, data) if data is not None else None
    if kind == "scenario":
        cells = expand(parse_scenario(path, data), inventory)
        skipped = sum(1 for c in cells if c.skip_reason) if inventory is not None else 0
        extra = f", {skipped} skipped" if skipped else ""
        return f"ok {path} ({len(cells)} cells{extra})"
    if kind == "inventory":
        inv = parse_inventory(path, data)
        return f"ok {path} ({len(inv.nodes)} nodes)"
    raise InputError(f"{path}:{getattr(data, 'line', 1)}", yamlfile.NEITHER_MESSAGE)


def run(args: argparse.Namespace) -> int:
    inventory = None
    if args.inventory:
        from harness.inventory import load_inventory

        inventory = load_inventory(args.inventory)  # a bad inventory: one line from harness.cli
    bad = 0
    for path in _expand_paths(args.files):
        try:
            if isinstance(path, InputError):
                raise path
            print(check_file(path, inventory))
        except HarnessError as err:
            print(str(err), file=sys.stderr)
            bad += 1
    return 1 if bad else 0
