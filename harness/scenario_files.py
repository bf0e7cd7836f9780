"""Which YAML files pytest collects as scenarios, decided by parsing them, never by sniffing bytes.

The rule (README, "Scenario files"): under a folder named `scenarios`, every *.yaml / *.yml file
is a scenario file and is either collected or reported with its one-line error -- except a
file whose top-level mapping has `inventory:` (an inventory kept next to the scenarios), which
is ignored. A raw-bytes `^scenario:` regex missed files with a BOM, CRLF line ends or flow
style (`{scenario: A, ...}`) and dropped them without a word; parsing the file with the
bounded loader (harness/yamlfile.py) sees exactly what the scenario loader sees.
"""
from __future__ import annotations

from pathlib import Path

from harness import yamlfile
from harness.errors import InputError
from harness.scenario import Scenario, parse_scenario


def load_for_collection(path: Path, shown_as: str) -> Scenario | None:
    """The validated scenario in `path`; None for an inventory file (ignored by rule).

    Every other problem -- unreadable, too big, not UTF-8, bad YAML, neither key, a bad
    scenario -- raises InputError("<shown_as>:line: ...").
    """
    data = yamlfile.load(shown_as, yamlfile.read_text(path, shown_as=shown_as))
    kind = yamlfile.top_level_kind(shown_as, data)
    if kind == "inventory":
        return None
    if kind != "scenario":
        raise InputError(f"{shown_as}:{getattr(data, 'line', 1)}", yamlfile.NEITHER_MESSAGE)
    return parse_scenario(shown_as, data)
