"""pytest plugin: every cell of every scenarios/**/*.yaml becomes one pytest item.

Why pytest: selection (-k on the readable cell id), parallelism (xdist), reports (JUnit,
pytest-html) and a familiar command come for free; this module only maps scenario files to
items. Collection never touches a node: it reads files only, so `--collect-only` is safe
anywhere and a 10,000-cell scenario collects in well under 2 s (benchmarks/bench_collect.py).

Options: --inventory PATH (default inventory/lab-in-a-box.yaml under the rootdir when it exists;
without an inventory every cell is collected and skipped with the reason), --baseline and
--results-dir (registered here, used by harness/report/pytest_hooks.py and harness/session.py).
Bad scenario or inventory files give one "path:line: message" line, never a traceback.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness import in_flight
from harness.cell import Cell
from harness.errors import HarnessError
from harness.node import Inventory

pytest_plugins = ["harness.report.pytest_hooks"]

DEFAULT_INVENTORY = Path("inventory") / "lab-in-a-box.yaml"
SCENARIO_DIR = "scenarios"
_TOP_LEVEL_SCENARIO = re.compile(rb"^scenario[ \t]*:", re.MULTILINE)
_INVENTORY_KEY = pytest.StashKey[tuple]()


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
    # An explicit --inventory that is wrong stops the run with one line before anything else.
    if config.getoption("inventory", None):
        _, error = get_inventory_or_error(config)
        if error is not None:
            raise pytest.UsageError(str(error))


def inventory_path(config: pytest.Config) -> Path | None:
    """The inventory this run uses: --inventory (relative to the invocation dir) or the default."""
    option = config.getoption("inventory", None)
    if option:
        path = Path(option)
        return path if path.is_absolute() else Path(config.invocation_params.dir) / path
    default = Path(config.rootpath) / DEFAULT_INVENTORY
    return default if default.is_file() else None


def get_inventory_or_error(config: pytest.Config) -> tuple[Inventory | None, HarnessError | None]:
    """Loaded once per pytest process and kept in config.stash."""
    if _INVENTORY_KEY not in config.stash:
        path = inventory_path(config)
        result: tuple[Inventory | None, HarnessError | None] = (None, None)
        if path is not None:
            from harness.inventory import load_inventory

            try:
                result = (load_inventory(_display_path(config, path)), None)
            except HarnessError as err:
                result = (None, err)
        config.stash[_INVENTORY_KEY] = result
    return config.stash[_INVENTORY_KEY]


def get_inventory(config: pytest.Config) -> Inventory | None:
    """The run's inventory (None when there is none); raises the loader's one-line error."""
    inventory, error = get_inventory_or_error(config)
    if error is not None:
        raise error
    return inventory


def _display_path(config: pytest.Config, path: Path) -> str:
    """Paths in messages relative to where pytest was started, when below it."""
    try:
        return str(path.resolve().relative_to(Path(config.invocation_params.dir).resolve()))
    except ValueError:
        return str(path)


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
    try:
        head = file_path.read_bytes()
    except OSError:
        return None
    if not _TOP_LEVEL_SCENARIO.search(head):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    """One scenario file; its items are the cells expanded against the run's inventory."""

    def collect(self):
        from harness.scenario import expand, parse_scenario
        from harness import yamlfile

        inventory = get_inventory(self.config)
        path = _display_path(self.config, self.path)
        data = yamlfile.load(path, self.path.read_text(encoding="utf-8"))
        for cell in expand(parse_scenario(path, data), inventory):
            yield CellItem.from_parent(self, name=cell.id, cell=cell)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class CellItem(pytest.Item):
    """One cell. Runs through the run's session (harness/session.py): run, record, judge."""

    def __init__(self, *, cell: Cell, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cell = cell

    def setup(self) -> None:
        if self.cell.skip_reason:
            pytest.skip(self.cell.skip_reason)

    def runtest(self) -> None:
        from harness.session import get_session

        get_session(self.config).run_and_judge(self.cell, self)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.cell.defined_at.rsplit(":", 1)[-1]
        return self.path, (int(line) - 1 if line.isdigit() else None), self.cell.id


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """xdist controller: remove the Hyper-V service GUIDs its workers registered (they keep them)."""
    config = session.config
    if getattr(config, "workerinput", None) is not None:
        return
    from harness.report.pytest_hooks import RUN_KEY
    from harness.results import run_dir
    from harness.session import remove_worker_registrations

    info = config.stash.get(RUN_KEY, None)
    if not info:
        return
    folder = run_dir(Path(info["results_dir"]), info["run_id"])
    for problem in remove_worker_registrations(config, folder):
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(problem, red=True)
