"""pytest plugin: every cell of every scenarios/**/*.yaml becomes one pytest item.

Why pytest: selection (-k on the readable cell id), parallelism (xdist), reports (JUnit,
pytest-html) and a familiar command come for free; this module only maps scenario files to
items. Collection never touches a node: it reads files only, so `--collect-only` is safe
anywhere and a 10,000-cell scenario collects in well under 2 s (benchmarks/bench_collect.py).

Options: --inventory PATH (default inventory/lab-in-a-box.yaml under the rootdir when it exists;
without an inventory every cell is collected and skipped with the reason), --baseline,
--results-dir, --probe-mode, --keep-registration. What happens after collection (session
setup, running a cell, results travelling with pytest's reports, writing the run) is
harness/lifecycle.py, registered here in pytest_configure.
Bad scenario or inventory files give one "path:line: message" line, never a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import in_flight, markers
from harness.cell import Cell
from harness.errors import HarnessError
from harness.judgement import Judgement
from harness.lifecycle import PLUGIN_NAME, MatrixRun, display_path, matrix_run
from harness.markers import cell_markers

SCENARIO_DIR = "scenarios"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hvsock-matrix", "hvsock-matrix connectivity cells")
    group.addoption("--inventory", default=None, metavar="PATH",
                    help="inventory file of the lab (default: inventory/lab-in-a-box.yaml under the "
                         "rootdir when it exists; without one every cell is skipped)")
    group.addoption("--baseline", default=None, metavar="RUN",
                    help="compare with an earlier run: a results.json path, a run id, or 'last'")
    group.addoption("--results-dir", default=None, metavar="DIR",
                    help="where runs and history are written (default: reports/ under the rootdir)")
    group.addoption("--probe-mode", default="session", choices=("session", "oneshot"),
                    help="session (default): one resident probe per node, per-cell cost is round-trips; "
                         "oneshot: a probe process per server and client")
    group.addoption("--keep-registration", action="store_true", default=False,
                    help="leave the Hyper-V service GUIDs this run registered on the hosts")
    in_flight.add_option(group)


def pytest_configure(config: pytest.Config) -> None:
    in_flight.limits_for(config)  # a bad --cells-in-flight stops the run with one line
    markers.register(config)
    run = MatrixRun(config)
    config.pluginmanager.register(run, PLUGIN_NAME)
    # An explicit --inventory that is wrong stops the run with one line before anything else.
    if config.getoption("inventory", None):
        _, error = run.inventory_or_error()
        if error is not None:
            raise pytest.UsageError(str(error))


def _under_scenarios_dir(config: pytest.Config, file_path: Path) -> bool:
    try:
        parts = file_path.resolve().relative_to(Path(config.rootpath).resolve()).parts[:-1]
    except ValueError:
        parts = file_path.parts[:-1]
    return SCENARIO_DIR in parts


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    if not _under_scenarios_dir(parent.config, file_path):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)  # harness/scenario_files.py: the rule


class ScenarioFile(pytest.File):
    """One scenario file; its items are the cells expanded against the run's inventory."""

    def collect(self):
        from harness.scenario import expand
        from harness.scenario_files import load_for_collection

        scenario = load_for_collection(self.path, display_path(self.config, self.path))
        if scenario is None:  # an inventory file kept under scenarios/: ignored by rule
            return
        inventory = matrix_run(self.config).inventory()
        for cell in expand(scenario, inventory):
            item = CellItem.from_parent(self, name=cell.id, cell=cell)
            for marker in cell_markers(cell, inventory):
                item.add_marker(marker)
            yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class CellError(HarnessError):
    """E: the harness or the lab failed for this cell. Raised in setup, so pytest says ERROR."""


class CellItem(pytest.Item):
    """One cell. It runs in setup (E is an ERROR there, n/a a skip); the call judges it."""

    def __init__(self, *, cell: Cell, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cell = cell
        self.judgement: Judgement | None = None  # harness/judgement.py, made in setup

    def setup(self) -> None:
        if self.cell.skip_reason:
            matrix_run(self.config).record_not_run(self, self.cell)
            self._skip(self.cell.skip_reason)
        self.judgement = matrix_run(self.config).run_cell(self, self.cell)
        if self.judgement.kind == "error":
            raise CellError(self.judgement.message)
        if self.judgement.kind == "skip":
            self._skip(self.judgement.message)

    def _skip(self, reason: str) -> None:
        """Skipped at the cell's line in its scenario file (as a skip marker would be), not here."""
        raise pytest.skip.Exception(reason, _use_item_location=True)

    def runtest(self) -> None:
        if self.judgement is not None and self.judgement.kind == "fail":
            pytest.fail(self.judgement.message, pytrace=False)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.cell.defined_at.rsplit(":", 1)[-1]
        return self.path, (int(line) - 1 if line.isdigit() else None), self.cell.id
