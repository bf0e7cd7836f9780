"""`load_run`: a run from its results file, or from its journal when it never finished.

Above both readers (reader.py for results files, journal.py for journals), so neither imports the
other's caller: every command and `--baseline` come through here.
"""
from __future__ import annotations

from pathlib import Path

from harness.results.journal import load_journal
from harness.results.model import Run
from harness.results.reader import JOURNAL, load_results_file


def load_run(path: Path | str) -> Run:
    """Read a results file (or a killed run's journal); anything wrong with it is one clear line (InputError)."""
    path = Path(path)
    if path.name == JOURNAL:
        return load_journal(path)
    return load_results_file(path)
