"""`hvsock-matrix expect --from RESULTS --into SCENARIO`: write measured errnos into expectations.

Why: an expectation such as `expect: X ECONNRESET` must come from a run, never be typed by hand.
For every explicit cell of SCENARIO that documents X or B, the run's observation of that cell
(matched by label, or by server/bind/client/target/socket/driver) gives the errno; when the
measured outcome is the documented one, the cell's `expect:` becomes "X <ERRNO>". A cell whose
measured outcome differs from its documentation is left as it is and listed: that is a finding
to look at, not a value to copy. Only the `expect:` values change (comments and layout stay);
the new file is validated before it atomically replaces the old one.
"""
from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import yamlfile
from harness.cell import variant_of
from harness.errors import InputError
from harness.outcome import Outcome
from harness.results import CellResult, Run, load_run, resolve_run, write_text_atomic
from harness.scenario import CellModel, Scenario, load_scenario, parse_scenario, split_expect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="results", required=True, metavar="RESULTS",
                        help="results.json, a run folder, a run id, last or previous")
    parser.add_argument("--into", dest="scenarios", required=True, nargs="+", metavar="SCENARIO",
                        help="scenario file(s) whose X/B expectations get the measured errno")
    parser.add_argument("--results-dir", default="reports",
                        help="where run ids are looked up (default: reports)")
    parser.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")


@dataclass(frozen=True)
class Change:
    line: int
    label: str
    old: str
    new: str


def _key(result: CellResult) -> tuple:
    return (result.server_on, result.bind, result.client_on, result.target, result.socket or "stream",
            result.driver or "probe", result.variant or "")


def _cell_key(scenario: Scenario, cell: CellModel) -> tuple:
    model = scenario.model
    driver = cell.driver or model.driver
    client = cell.server.on if cell.client.on == "server" else cell.client.on
    return (cell.server.on, cell.server.bind, client, cell.client.target, cell.socket or model.socket, driver.kind,
            variant_of(cell.server.phase, cell.client.phase, cell.server.unprivileged))


def _measured(scenario: Scenario, cell: CellModel, run: Run) -> list[CellResult]:
    """This cell's results in the run: by label when it has one, else by its tokens (named nodes)."""
    mine = [r for r in run.cells if r.scenario == scenario.name]
    if cell.label is not None:
        return [r for r in mine if r.label == cell.label]
    key = _cell_key(scenario, cell)
    return [r for r in mine if r.label is None and _key(r) == key]


def plan_changes(scenario: Scenario, run: Run) -> tuple[list[Change], list[str]]:
    """What to write (one Change per cell) and what to tell the user about the cells left alone."""
    changes: list[Change] = []
    notes: list[str] = []
    for index, cell in enumerate(scenario.model.cells):
        expected, expected_errno = split_expect(cell.expect)
        if expected not in (Outcome.X, Outcome.B):
            continue
        where = scenario.where("cells", index, "expect")
        name = cell.label or f"cell {index + 1}"
        results = _measured(scenario, cell, run)
        if not results:
            notes.append(f"{where}: {name}: not in run {run.run_id}, left as is")
            continue
        observed = {(r.observation.outcome, r.observation.outcome_errno) for r in results}
        if len(observed) != 1:
            seen = ", ".join(sorted(f"{o.value} {e or '?'}" for o, e in observed))
            notes.append(f"{where}: {name}: its {len(results)} cells measured differently ({seen}), left as is")
            continue
        outcome, errno = observed.pop()
        if outcome is not expected:
            notes.append(f"{where}: {name}: documented {cell.expect}, measured {outcome.value} {errno or ''}"
                         .rstrip() + ": left as is (a finding, not a value to copy)")
            continue
        if not errno:
            notes.append(f"{where}: {name}: measured {outcome.value} without an errno, left as is")
            continue
        if errno != expected_errno:
            changes.append(Change(yamlfile.line_of(scenario.data, ("cells", index, "expect")), name,
                                  str(cell.expect), f"{outcome.value} {errno}"))
    return changes, notes


def _keep_key(value: str) -> Callable[[re.Match[str]], str]:
    """A re.sub replacement: the `expect:` key as written, then the new value."""
    return lambda match: match.group(1) + value


def apply_changes(text: str, changes: list[Change], path: str) -> str:
    """The file text with each change's `expect:` value replaced on its own line."""
    lines = text.splitlines(keepends=True)
    for change in changes:
        line = lines[change.line - 1]
        pattern = re.compile(r"(\bexpect:\s*)(['\"]?)" + re.escape(change.old) + r"\2(?=\s*(?:[,}#]|$))", re.IGNORECASE)
        new, count = pattern.subn(_keep_key(change.new), line, count=1)
        if count != 1:
            raise InputError(f"{path}:{change.line}", f"cannot find 'expect: {change.old}' on this line to rewrite")
        lines[change.line - 1] = new
    return "".join(lines)


def update_file(path: str, run: Run, dry_run: bool = False) -> tuple[list[Change], list[str]]:
    scenario = load_scenario(path)
    changes, notes = plan_changes(scenario, run)
    if changes and not dry_run:
        text = Path(path).read_text(encoding="utf-8")
        new_text = apply_changes(text, changes, path)
        parse_scenario(path, yamlfile.load(path, new_text))  # never write a file that no longer loads
        write_text_atomic(Path(path), new_text)
    return changes, notes


def run(args: argparse.Namespace) -> int:
    measured = load_run(resolve_run(args.results, args.results_dir))
    for path in args.scenarios:
        changes, notes = update_file(path, measured, args.dry_run)
        verb = "would write" if args.dry_run else "wrote"
        for change in changes:
            print(f"{path}:{change.line}: {change.label}: expect {change.old} -> {change.new}")
        for note in notes:
            print(note)
        print(f"{path}: {verb} {len(changes)} errno(s) from run {measured.run_id}")
    return 0
