"""`hvsock-matrix bisect-cmd CELL_ID [--expect O|X ERRNO]`: a one-cell command for `git bisect run`.

A kernel developer who sees a cell change between two kernels hands the printed command (or the
script written with --out) to `git bisect run`. The command runs that one cell through pytest,
exactly as `pytest scenarios/` would (same plugin, inventory and judgement of the observation),
reads the cell's observation from the results file it wrote, and exits as `git bisect run` wants:

    0    the cell shows the good outcome (--expect, else its documented expectation)
    1    it shows another outcome (O, X or B; an errno other than the good one, when one is given)
    125  it ended E (the lab or the harness failed: a kernel that does not boot), n/a, was
         skipped, or could not run at all: `git bisect run` skips that commit

The step itself is `hvsock-matrix bisect-step` (harness/commands/bisect_step.py).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from harness.commands import bisect_step
from harness.errors import HarnessError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cell_id", metavar="CELL_ID", help="the cell, as in results and pytest ids "
                        "(KVM-C1-vm21[vm21:any-from-l1:server])")
    parser.add_argument("--expect", nargs="+", metavar="OUTCOME", default=None,
                        help="the good outcome: O, X, B, optionally with the errno (X ECONNREFUSED); "
                             "default: the cell's documented expectation")
    bisect_step.add_location_arguments(parser)
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="write an executable sh script running the command, instead of printing it")


def step_argv(node_id: str, good: str, root: Path, inventory: Path | None, timeout: float) -> list[str]:
    """The step as argv: absolute paths, since `git bisect run` runs it in the bisected tree."""
    argv = [sys.executable, "-m", "harness.cli", "bisect-step", node_id, "--expect", *good.split(),
            "--root", str(root)]
    if inventory is not None:
        argv += ["--inventory", str(inventory)]
    if timeout != bisect_step.DEFAULT_TIMEOUT:
        argv += ["--timeout", f"{timeout:g}"]
    return argv


def script_text(argv: list[str], root: Path, cell_id: str, good: str) -> str:
    return (
        "#!/bin/sh\n"
        f"# hvsock-matrix bisect step for {cell_id}: exit 0 when it shows {good}, 1 when it shows\n"
        "# another outcome, 125 when it ends E or cannot run (git bisect run skips the commit).\n"
        "# Use: git bisect run THIS_SCRIPT  (or call it at the end of your own step script)\n"
        f"cd {shlex.quote(str(root))} || exit 125\n"
        f"exec {shlex.join(argv)}\n"
    )


def run(args: argparse.Namespace) -> int:
    good = bisect_step.parse_good(" ".join(args.expect)) if args.expect else None
    root = Path(args.root).resolve()
    inventory = bisect_step.inventory_path(root, args.inventory)
    found = bisect_step.find_cell(root, args.cell_id, inventory, args.scenarios)
    if good is not None:
        pass
    elif found.cell.expected is not None:
        good = bisect_step.Good(found.cell.expected, found.cell.expected_errno)
    else:
        raise HarnessError(f"{found.shown_as}: {args.cell_id} has no documented expectation: "
                           "say which outcome is good with --expect O (or X ERRNO)")
    argv = step_argv(found.node_id, good.text, root, inventory, args.timeout)
    if args.out:
        from harness.results import write_text_atomic

        out = write_text_atomic(Path(args.out), script_text(argv, root, args.cell_id, good.text))
        out.chmod(0o755)
        print(f"wrote {out}: git bisect run {shlex.quote(str(out.resolve()))}")
    else:
        print(f"cd {shlex.quote(str(root))} && {shlex.join(argv)}")
    return 0
