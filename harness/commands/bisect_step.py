"""`hvsock-matrix bisect-step NODE_ID --expect O|X ERRNO`: run one cell, exit 0 / 1 / 125 for `git bisect run`.

Written by `hvsock-matrix bisect-cmd` (harness/commands/bisect_cmd.py), which finds the cell's
scenario file and its good outcome. The cell runs in a pytest subprocess with the project's own
plugin and a private results folder, so the observation is the one `pytest scenarios/` records;
its outcome, not pytest's exit status, decides (a bisect asks "which outcome", not "as documented").
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import harness
from harness.cell import Cell
from harness.errors import HarnessError, InputError
from harness.outcome import Observation, Outcome

GOOD, BAD, SKIP = 0, 1, 125  # git bisect run: good, bad, cannot test this commit
DEFAULT_TIMEOUT = 1800.0  # seconds for the whole step, lab session start included
DEFAULT_INVENTORY = Path("inventory") / "lab-in-a-box.yaml"  # the plugin's default


@dataclass(frozen=True)
class Good:
    outcome: Outcome
    errno: str | None = None

    @property
    def text(self) -> str:
        return f"{self.outcome.value} {self.errno}" if self.errno else self.outcome.value

    def matches(self, observation: Observation) -> bool:
        if observation.outcome is not self.outcome:
            return False
        return self.errno is None or observation.outcome_errno == self.errno


def parse_good(text: str) -> Good:
    """`O`, `X`, `B`, `X ECONNREFUSED`, `B EADDRINUSE`: one clear line for anything else."""
    parts = text.split()
    try:
        outcome = Outcome.parse(parts[0]) if parts else None
    except ValueError:
        outcome = None
    if outcome not in (Outcome.O, Outcome.X, Outcome.B) or len(parts) > 2 or \
            (len(parts) == 2 and (outcome is Outcome.O or not parts[1].isupper())):
        raise HarnessError(f"--expect {text!r}: expected O, X or B, optionally X/B with an errno name "
                           "(X ECONNREFUSED)")
    return Good(outcome, parts[1] if len(parts) == 2 else None)


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=".", metavar="DIR",
                        help="the hvsock-matrix project the cell runs from (default: the current folder)")
    parser.add_argument("--inventory", default=None, metavar="FILE",
                        help="the lab's inventory (default: inventory/lab-in-a-box.yaml under --root)")
    parser.add_argument("--scenarios", nargs="*", default=None, metavar="PATH",
                        help="scenario files or folders to find the cell in (default: scenarios/ under --root)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"give up on the step after S seconds: exit 125 (default {DEFAULT_TIMEOUT:g})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node_id", metavar="NODE_ID", help="scenarios/FILE.yaml::CELL_ID, as bisect-cmd prints it")
    parser.add_argument("--expect", nargs="+", required=True, metavar="OUTCOME",
                        help="the good outcome: O, X, B, optionally with the errno (X ECONNREFUSED)")
    add_location_arguments(parser)


def inventory_path(root: Path, option: str | None) -> Path | None:
    if option:
        path = Path(option)
        return (path if path.is_absolute() else Path.cwd() / path).resolve()
    default = root / DEFAULT_INVENTORY
    return default if default.is_file() else None


@dataclass(frozen=True)
class FoundCell:
    cell: Cell
    node_id: str  # relative to root: what pytest takes to run exactly this cell
    shown_as: str


def _scenario_files(root: Path, paths: list[str] | None) -> list[Path]:
    out: list[Path] = []
    for text in paths or [str(root / "scenarios")]:
        path = Path(text) if Path(text).is_absolute() else (Path.cwd() / text)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(text, "no such scenario file or folder")
    return out


def find_cell(root: Path, cell_id: str, inventory: Path | None, scenarios: list[str] | None) -> FoundCell:
    """The cell with this id in the scenario files, expanded against the inventory (files only)."""
    from harness.cell import current_id
    from harness.inventory import load_inventory
    from harness.scenario import expand
    from harness.scenario_files import load_for_collection

    cell_id = current_id(cell_id)
    inv = load_inventory(str(inventory)) if inventory is not None else None
    for path in _scenario_files(root, scenarios):
        try:
            shown_as = str(path.resolve().relative_to(root))
        except ValueError:
            shown_as = str(path)
        scenario = load_for_collection(path, shown_as)
        if scenario is None:
            continue
        for cell in expand(scenario, inv):
            if cell.id == cell_id:
                return FoundCell(cell, f"{shown_as}::{cell.id}", shown_as)
    where = f"the inventory {inventory}" if inventory else "no inventory"
    raise HarnessError(f"{cell_id}: no such cell in the scenario files (expanded against {where}); "
                       "`pytest scenarios/ --collect-only -q` lists the ids")


def _plugin_args() -> list[str]:
    installed = any(ep.name == "hvsock_matrix" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "harness.plugin"]


def pytest_argv(node_id: str, inventory: Path | None, results_dir: Path) -> list[str]:
    argv = [sys.executable, "-m", "pytest", node_id, "-p", "no:cacheprovider", *_plugin_args(),
            "--results-dir", str(results_dir), "--cells-in-flight", "1", "-q", "-rA", "--no-header"]
    if inventory is not None:
        argv += ["--inventory", str(inventory)]
    return argv


def observe(node_id: str, root: Path, inventory: Path | None, timeout: float) -> tuple[Observation | None, str]:
    """Run the one cell; its observation (None when none was recorded) and pytest's output."""
    from harness.results import list_history, load_run

    cell_id = node_id.rsplit("::", 1)[-1]
    package_root = str(Path(harness.__file__).resolve().parents[1])  # the same harness code as this step
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="hvsock-bisect-") as tmp:
        try:
            proc = subprocess.run(pytest_argv(node_id, inventory, Path(tmp)), cwd=root, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
            return None, f"{out}\n(timed out after {timeout:g} s)"
        output = proc.stdout + proc.stderr
        runs = list_history(Path(tmp))
        if not runs:
            return None, output
        found = load_run(runs[-1]).cell(cell_id)
        return (found.observation if found else None), output


def decide(observation: Observation | None, good: Good) -> tuple[int, str]:
    if observation is None:
        return SKIP, "no observation recorded (the cell could not run)"
    seen = observation.summary()
    if observation.outcome is Outcome.E:
        return SKIP, f"E ({observation.detail}): cannot test"
    if observation.outcome is Outcome.NA:
        return SKIP, f"n/a ({observation.detail}): cannot test"
    if good.matches(observation):
        return GOOD, f"observed {seen}: good ({good.text})"
    return BAD, f"observed {seen}: bad (good is {good.text})"


def run(args: argparse.Namespace) -> int:
    try:
        good = parse_good(" ".join(args.expect))
        root = Path(args.root).resolve()
        observation, output = observe(args.node_id, root, inventory_path(root, args.inventory), args.timeout)
    except HarnessError as err:  # never exit 2 from a step: git bisect run would call the commit bad
        print(f"hvsock-matrix bisect-step: {err}: exit {SKIP}", file=sys.stderr)
        return SKIP
    status, why = decide(observation, good)
    if status == SKIP:
        tail = "\n".join(output.strip().splitlines()[-25:])
        print(tail, file=sys.stderr)
    print(f"hvsock-matrix bisect-step: {args.node_id.rsplit('::', 1)[-1]} {why}: exit {status}")
    return status
