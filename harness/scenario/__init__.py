"""Scenario files: which cells a matrix has and what the documents expect of each.

model.py reads and checks a file (pydantic, strict; one "path:line: message" per error);
expansion.py turns a scenario and an inventory into cells. The format is docs/scenario-format.md.
The names below are the package's interface: import them from `harness.scenario`.
"""
from __future__ import annotations

from harness.scenario.expansion import expand, load_cells, match_location, related
from harness.scenario.model import (
    DEFAULT_MAX_CELLS,
    HARD_MAX_CELLS,
    SELECTORS,
    CellModel,
    Scenario,
    check_location,
    load_scenario,
    parse_scenario,
    split_expect,
)

__all__ = ["DEFAULT_MAX_CELLS", "HARD_MAX_CELLS", "SELECTORS", "CellModel", "Scenario", "check_location", "expand",
           "load_cells", "load_scenario", "match_location", "parse_scenario", "related", "split_expect"]
