"""The one reader of results files (`report`, `diff`, `expect`, `--baseline`, the history strip).

A results file is input like a YAML file (harness/yamlfile.py) and is read the same bounded way:
only regular files, the size capped before reading, the nesting depth measured by a linear scan
before json (whose C scanner recurses once per bracket), UTF-8 only (a UTF-16 or Latin-1 file is
named in one line, with where), NaN/Infinity and huge numbers refused, every field checked for the
type the model declares, and a `run_id` of the form `new_run_id()` writes (it names files under
history/ and runs/, so `../x` never reaches a path). Every refusal is one `InputError` line.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness import textfile
from harness.errors import InputError
from harness.outcome import Observation
from harness.results.model import RUN_ID, Run

JOURNAL = "journal.jsonl"  # runs/<run-id>/journal.jsonl: the cells of a run not finished (harness/results/journal.py)

MAX_BYTES = 64 * 1024 * 1024  # a 10,000-cell run with its commands is ~15 MB
MAX_DEPTH = 32  # a results file nests 5 deep (run / cells / cell / observation / extra ...)
MAX_NUMBER_DIGITS = 40

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)  # never fails: no backtracking
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_NUMBER = re.compile(rf"\d{{{MAX_NUMBER_DIGITS + 1},}}")
_TOKEN = re.compile(rf"[\[\]{{}}]|\d{{{MAX_NUMBER_DIGITS + 1},}}")

# Observation fields as the dataclass declares them (harness/outcome.py): name -> accepted types.
_OBSERVATION_TYPES: dict[str, tuple[type, ...]] = {
    "outcome": (str,), "errno_name": (str,), "errno": (int,), "elapsed_ms": (int, float), "reply": (str,),
    "bind_errno_name": (str,), "bind_errno": (int,), "detail": (str,), "commands": (list,),
    "server_address": (str,), "client_address": (str,), "started_at": (str,), "duration_ms": (int, float),
    "extra": (dict,),
}


def load_results_file(path: Path | str) -> Run:
    """Read a results file; anything wrong with it is one clear line (InputError). Callers use
    harness.results.load_run, which also reads a killed run's journal (harness/results/load.py)."""
    path = Path(path)
    return run_from_data(read_json(path, what="results file"), path)


def run_from_data(data: Any, path: Path) -> Run:
    """A results file's parsed JSON, every field checked, as a Run (InputError naming `path`)."""
    if not isinstance(data, dict) or "run_id" not in data or not isinstance(data.get("cells"), list):
        raise InputError(str(path), "not an hvsock-matrix results file (no run_id / cells)")
    run_id = data["run_id"]
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise InputError(str(path), f"run_id {_short(run_id)} is not a run id (like 20261130T101500Z-1a2b3c)")
    if not isinstance(data.get("meta", {}), dict):
        raise InputError(str(path), "meta is not a mapping")
    for index, cell in enumerate(data["cells"]):
        where = f"cell {index + 1}"
        if not isinstance(cell, dict):
            raise InputError(str(path), f"{where}: not a mapping")
        _check_observation(cell.get("observation"), str(path), f"{where} ({_short(cell.get('id'))}) observation")
        if cell.get("baseline") is not None:
            _check_observation(cell["baseline"], str(path), f"{where} ({_short(cell.get('id'))}) baseline")
    try:
        return Run.from_dict(data, path=path)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(str(path), f"malformed cell in results file: {_short(err, 200)}") from None


def read_json(path: Path, what: str = "file", max_bytes: int | None = None) -> Any:
    """JSON from a regular file of at most max_bytes (MAX_BYTES), nested at most MAX_DEPTH, in UTF-8."""
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    text = textfile.read_text(path, max_bytes, what)
    check_nesting(text, str(path))
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}", f"not valid JSON: {err.msg}") from None
    except (ValueError, RecursionError) as err:
        raise InputError(str(path), f"not valid JSON: {_short(err, 120)}") from None


def check_nesting(text: str, where: str) -> None:
    """Depth and number length without recursion, at C speed: strings blanked, brackets kept, then
    the innermost pairs removed MAX_DEPTH times; json.loads never sees 200,000 nested brackets."""
    bare = _STRING.sub('""', text)
    if _LONG_NUMBER.search(bare):
        _refuse_at(text, where)
    brackets = _NOT_BRACKET.sub("", bare)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return
        shorter = brackets.replace("[]", "").replace("{}", "")
        if shorter == brackets:
            break
        brackets = shorter
    if brackets:
        _refuse_at(text, where)  # too deep, or unbalanced (then json.loads says where)


def _refuse_at(text: str, where: str) -> None:
    """The slow path, only for a file about to be refused: the line where it goes too deep."""
    bare = _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', text)
    depth = 0
    for match in _TOKEN.finditer(bare):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = bare.count("\n", 0, match.start()) + 1
                raise InputError(f"{where}:{line}", f"nested more than {MAX_DEPTH} deep")
        elif token in "]}":
            depth -= 1
        else:
            line = bare.count("\n", 0, match.start()) + 1
            raise InputError(f"{where}:{line}", f"a number longer than {MAX_NUMBER_DIGITS} digits")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _check_observation(data: Any, where: str, what: str) -> None:
    if not isinstance(data, dict):
        raise InputError(where, f"{what}: not a mapping")
    if "outcome" not in data:
        raise InputError(where, f"{what}: no outcome")
    for name, value in data.items():
        types = _OBSERVATION_TYPES.get(name)
        if types is None or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise InputError(where, f"{what}: {name} is {type(value).__name__}, not {types[0].__name__}")
    if any(not isinstance(c, str) for c in data.get("commands") or []):
        raise InputError(where, f"{what}: commands must be text")
    try:
        Observation.from_dict(data)
    except ValueError as err:
        raise InputError(where, f"{what}: {_short(err, 200)}") from None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
