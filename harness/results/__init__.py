"""Results: the model of a stored run (model.py), its files and history (store.py), the one
bounded reader of results files (reader.py) and the recorder of the run in progress (recorder.py).
The names below are the package's interface; import them from `harness.results`.
"""
from __future__ import annotations

from harness.results.load import load_run
from harness.results.model import CELL_FIELDS, RUN_ID, SCHEMA, CellResult, Run, counts, new_run_id, utc_now
from harness.results.reader import MAX_BYTES, read_json
from harness.results.recorder import Recorder
from harness.results.store import (
    check_output_path,
    history_dir,
    list_history,
    load_history,
    point_latest,
    resolve_run,
    run_dir,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["CELL_FIELDS", "MAX_BYTES", "RUN_ID", "SCHEMA", "CellResult", "Recorder", "Run", "check_output_path", "counts",
           "history_dir", "list_history", "load_history", "load_run", "new_run_id", "point_latest", "read_json",
           "resolve_run", "run_dir", "utc_now", "write_json_atomic", "write_text_atomic"]
