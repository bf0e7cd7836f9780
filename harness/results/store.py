"""Results store: one JSON file per run, a history of runs, and the baseline a run is judged against.

Why this shape: xdist workers may run on other machines, so results reach the controller
inside pytest's test reports (harness/lifecycle.py), never through files; what reached the
controller survives a crashed worker. The controller writes one `results.json` atomically
(temp file + os.replace) when the session finishes, also after Ctrl-C. Layout under the
results directory (default `reports/`):

    runs/<run-id>/results.json         the run (plus matrix.html, matrix.md from harness.report)
    history/<run-id>.json              the same file, kept for `--baseline last`, `diff` and strips
    latest -> runs/<run-id>            symlink (a text file holding the run id where symlinks fail)
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import InputError, OutputError
from harness.results.load import load_run
from harness.results.model import RUN_ID, Run
from harness.results.reader import JOURNAL


def _readable(fd: int) -> None:
    """mkstemp makes 0600 files; results are ordinary files (0666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON so a reader never sees half a file (and a value JSON cannot hold writes nothing)."""
    return write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n", durable=True)


def write_text_atomic(path: Path, text: str, durable: bool = False, make_parents: bool = True) -> Path:
    """Temp file in the same folder + os.replace; durable: fsync'd first (results survive a power cut).

    Only ever replaces a regular file: a folder, a device (/dev/full), a FIFO or a socket at `path`
    is refused (os.replace would swap a device node for a file when run as root). Missing folders
    are made, as pytest's --junitxml makes them; make_parents=False refuses them instead.
    Failures are one line (OutputError).
    """
    path = Path(path)
    check_output_path(path, parent_must_exist=not make_parents)
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputError(path, err.strerror or str(err)) from None
    try:
        _readable(fd)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise OutputError(path, err.strerror or str(err)) from None
        raise
    return path


def check_output_path(path: Path, parent_must_exist: bool = False) -> None:
    """Refuse to replace anything but a regular file; with parent_must_exist, a missing folder too."""
    try:
        info = path.stat()
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise OutputError(path, err.strerror or str(err)) from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise OutputError(path, f"{kind}; give a file name")
    if parent_must_exist and not path.parent.is_dir():
        raise OutputError(path, f"no folder {path.parent}")


def history_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "history"


def run_dir(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "runs" / run_id


def list_history(results_dir: Path) -> list[Path]:
    """History files, oldest first (run ids start with a UTC timestamp)."""
    folder = history_dir(results_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def resolve_run(ref: str, results_dir: Path | str = "reports") -> Path:
    """A results file from a path, a run id, `last` (newest run) or `previous` (the one before)."""
    results_dir = Path(results_dir)
    if ref in ("last", "latest", "previous"):
        runs = list_history(results_dir)
        need = 2 if ref == "previous" else 1
        if len(runs) < need:
            raise InputError(str(history_dir(results_dir)),
                             f"`{ref}`: only {len(runs)} run(s) in the history")
        return runs[-need]
    candidate = Path(ref)
    if candidate.is_dir() and (candidate / "results.json").is_file():
        return candidate / "results.json"
    if candidate.is_dir() and (candidate / JOURNAL).is_file():
        return candidate / JOURNAL  # a killed run: its journal (harness/results/journal.py)
    if candidate.is_file():
        return candidate
    by_id = history_dir(results_dir) / f"{ref}.json"
    if by_id.is_file():
        return by_id
    journal = run_dir(results_dir, ref) / JOURNAL
    if RUN_ID.fullmatch(ref) and journal.is_file():
        return journal
    raise InputError(ref, f"no such results file or run id (looked in {history_dir(results_dir)})")


def load_history(results_dir: Path, before: str | None = None, limit: int = 10) -> list[Run]:
    """The last `limit` runs older than run id `before` (oldest first); unreadable ones skipped."""
    paths = [p for p in list_history(results_dir) if before is None or p.stem < before]
    runs = []
    for path in paths[-limit:] if limit > 0 else []:
        try:
            runs.append(load_run(path))
        except InputError:
            continue
    return runs


def point_latest(results_dir: Path, run_id: str) -> Path:
    """Make `latest` point at runs/<run_id>: a symlink swapped atomically, else a pointer file."""
    results_dir = Path(results_dir)
    latest = results_dir / "latest"
    tmp = results_dir / f".latest.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(Path("runs") / run_id, tmp, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(tmp, latest)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        if latest.is_symlink():
            latest.unlink()
        write_text_atomic(latest, run_id + "\n")
    return latest


