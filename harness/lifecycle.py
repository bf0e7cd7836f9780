"""The pytest plugin's lifecycle in one place: which hook does what, in which process.

One `MatrixRun` object per pytest process, registered as a plugin by harness/plugin.py in
pytest_configure (find it with `matrix_run(config)`). Its hooks, in the order pytest calls them:

    controller (or the only process)              xdist worker (maybe another machine)
    --------------------------------              ------------------------------------
    pytest_configure: run id, baseline, Recorder
    pytest_configure_node ── run id, baseline observations (workerinput) ──►  pytest_configure
                                                  collection: one CellItem per cell (plugin.py)
                                                  pytest_collection_finish: collection order
                                                  pytest_runtestloop (first): session setup:
                                                      boot the lab, start probes, register GUIDs;
                                                      without xdist, cells in flight start ahead
                                                  CellItem.setup: run the cell (or take its
                                                      in-flight result), judge it once
                                                      (harness/judgement.py); E raises (ERROR),
                                                      n/a skips; CellItem.runtest: mismatch/flip FAILS
                                                  pytest_runtest_makereport: the cell's result
                                                      onto its setup report (REPORT_ATTR)
    pytest_runtest_logreport: Recorder.add ◄──────── the report, via execnet
    pytest_testnodedown: GUIDs to remove ◄─────────── pytest_sessionfinish: workeroutput; close
    pytest_sessionfinish: remove GUIDs; write results.json + matrices (exit 3 when it cannot)
    pytest_terminal_summary: the matrix

Without xdist one process plays both columns through the same hooks, so there is one path.
Results never touch a shared filesystem: what reached the controller survives a dead worker.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from harness import in_flight
from harness.cell import Cell
from harness.errors import HarnessError, InputError
from harness.judgement import Judgement, judge
from harness.node import Inventory
from harness.outcome import Observation, Outcome
from harness.report.pytest_output import PytestHtmlSummary, attempt_properties, cell_properties, write_summary
from harness.results import CellResult, Recorder, new_run_id, resolve_run, utc_now
from harness.scheduler import CellScheduler
from harness.session import RunSession, remove_registrations

PLUGIN_NAME = "hvsock-matrix-run"
REPORT_ATTR = "hvsock_matrix"  # a cell's result on its setup TestReport: plain data, crosses execnet
WORKERINPUT = "hvsock_matrix_run"  # controller -> worker: run id and baseline observations (judged fields)
WORKEROUTPUT = "hvsock_matrix_registrations"  # worker -> controller: Hyper-V GUIDs it kept
DEFAULT_INVENTORY = Path("inventory") / "lab-in-a-box.yaml"

log = logging.getLogger("hvsock_matrix")


def matrix_run(config: pytest.Config) -> MatrixRun:
    run = config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert isinstance(run, MatrixRun), "harness.plugin registers MatrixRun in pytest_configure"
    return run


def display_path(config: pytest.Config, path: Path) -> str:
    """Paths in messages relative to where pytest was started, when below it."""
    try:
        return str(path.resolve().relative_to(Path(config.invocation_params.dir).resolve()))
    except ValueError:
        return str(path)


class MatrixRun:
    """The run as this pytest process sees it; see the module docstring for the hook order."""

    def __init__(self, config: pytest.Config):
        self.config = config
        workerinput = getattr(config, "workerinput", None)
        self.worker_id: str | None = workerinput.get("workerid") if workerinput is not None else None
        self.recorder: Recorder | None = None  # the controller's only
        self.baseline_warning: str | None = None
        self.baseline: dict[str, dict[str, Any]] = {}  # cell id -> baseline observation (judgement.JUDGED_FIELDS)
        self.order: dict[str, int] = {}  # cell id -> collection index
        self.session: RunSession | None = None  # where cells run
        self.in_flight: CellScheduler | None = None  # cells run ahead of the item loop (harness/in_flight.py)
        self.registrations: dict[str, set[str]] = {}  # GUIDs xdist workers kept, removed at the end
        self.done: dict[str, Any] = {}  # what sessionfinish wrote (or the error)
        self.cell_data: dict[str, dict[str, Any]] = {}  # nodeid -> REPORT_ATTR data, until its setup report
        self.attempts: dict[str, list[dict[str, Any]]] = {}  # nodeid -> its attempts so far (pytest --reruns)
        self.properties_added: dict[str, list[tuple[str, object]]] = {}  # nodeid -> JUnit properties of its last attempt
        self._inventory: tuple[Inventory | None, HarnessError | None] | None = None
        self._say_lock = threading.Lock()
        if workerinput is not None:
            info = workerinput.get(WORKERINPUT) or {}
            self.baseline = dict(info.get("baseline") or {})
            self.owner: str | None = info.get("owner")
        else:
            self._start_recorder()

    # -- configure -----------------------------------------------------------------------------

    def _results_dir(self) -> Path:
        option = self.config.getoption("results_dir", None)
        base = Path(self.config.invocation_params.dir)
        return (base / option) if option else Path(self.config.rootpath) / "reports"

    def _start_recorder(self) -> None:
        """A new run id and the baseline; a missing `last` is a warning (first night), a bad FILE stops.
        A results folder that could never be written stops the run now, not after the last cell."""
        results_dir = self._results_dir()
        problem = results_dir_problem(results_dir)
        if problem:
            raise pytest.UsageError(f"--results-dir {results_dir}: {problem}")
        meta: dict[str, Any] = {"run_id": new_run_id(), "started": utc_now(),
                                "pytest_args": [str(a) for a in self.config.invocation_params.args]}
        ref = self.config.getoption("baseline", None)
        try:
            if ref:
                meta["baseline_path"] = str(resolve_run(str(ref), results_dir))
            self.recorder = Recorder(results_dir, meta)
        except InputError as err:
            if ref not in ("last", "latest", "previous"):
                raise pytest.UsageError(f"--baseline: {err}") from None
            self.baseline_warning = f"--baseline {ref}: {err}; running without a baseline"
            meta.pop("baseline_path", None)
            self.recorder = Recorder(results_dir, meta)
        self.baseline = self.recorder.baseline_for_workers()
        if self.config.pluginmanager.hasplugin("html"):
            self.config.pluginmanager.register(PytestHtmlSummary(self.done), "hvsock-matrix-html-summary")

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist controller -> worker: what a worker needs to judge a cell as the controller would
        (the baseline's outcome and errnos per cell, never a file path)."""
        from harness.hyperv.ownership import owner_tag

        # the controller's owner tag: workers register service GUIDs under it, so a killed run's are swept
        node.workerinput[WORKERINPUT] = {"run_id": self.recorder.run_id if self.recorder else None,
                                         "baseline": self.baseline, "owner": owner_tag()}

    def inventory_path(self) -> Path | None:
        """--inventory (relative to the invocation dir), else the running lab's own inventory, else
        inventory/lab-in-a-box.yaml when present (the lab then boots in session setup)."""
        option = self.config.getoption("inventory", None)
        if option:
            path = Path(option)
            return path if path.is_absolute() else Path(self.config.invocation_params.dir) / path
        default = Path(self.config.rootpath) / DEFAULT_INVENTORY
        if not default.is_file():
            return None
        from harness.lab import running_lab_inventory

        return running_lab_inventory() or default

    def inventory_or_error(self) -> tuple[Inventory | None, HarnessError | None]:
        """Loaded once per pytest process."""
        if self._inventory is None:
            path = self.inventory_path()
            self._inventory = (None, None)
            if path is not None:
                from harness.inventory import load_inventory

                try:
                    self._inventory = (load_inventory(display_path(self.config, path)), None)
                except HarnessError as err:
                    self._inventory = (None, err)
        return self._inventory

    def inventory(self) -> Inventory | None:
        """The run's inventory (None when there is none); raises the loader's one-line error."""
        inventory, error = self.inventory_or_error()
        if error is not None:
            raise error
        return inventory

    # -- session setup, where cells run ----------------------------------------------------------

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Collection order, so the run keeps the scenario files' order of cells."""
        for index, item in enumerate(session.items):
            cell = getattr(item, "cell", None)
            self.order.setdefault(cell.id if isinstance(cell, Cell) else item.nodeid, index)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """Session setup before the first cell: lab, probes, registration (so --durations are honest)."""
        if session.config.option.collectonly:
            return
        cells = _runnable_cells(getattr(session, "items", None) or [])
        if cells:
            run = self._session_for(cells)
            self.in_flight = in_flight.start(self.config, session.items, run.run)

    def _session_for(self, cells: list[Cell]) -> RunSession:
        if self.session is None:
            inventory = self.inventory()
            if inventory is None:
                raise HarnessError("no inventory: pass --inventory FILE or start the lab (hvsock-matrix lab up)")
            keep = bool(self.config.getoption("keep_registration", False)) or self.worker_id is not None
            self.session = RunSession(inventory, probe_mode=self.config.getoption("probe_mode", None) or "session",
                                      keep_registration=keep, say=self._say, warm_up=self.worker_id is None,
                                      owner=getattr(self, "owner", None))
            self.session.start(cells)
        return self.session

    def _say(self, line: str) -> None:
        """A progress line on the terminal now, even while pytest captures; and in the log."""
        log.info(line)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        with self._say_lock, (capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()):
            reporter.ensure_newline()
            reporter.write_line(line)

    # -- one cell (called by CellItem.setup) -----------------------------------------------------

    def baseline_of(self, cell: Cell) -> Observation | None:
        found = self.baseline.get(cell.id)
        return Observation.from_dict(found) if found else None

    def run_cell(self, item: pytest.Item, cell: Cell) -> Judgement:
        """Run the cell, judge it once, and put that one result on the item: JUnit properties, the
        commands section, and the report data the controller records (so every output agrees)."""
        session = self._session_for([cell])
        attempts = self.attempts.setdefault(item.nodeid, [])  # earlier ones: this is a rerun
        if attempts and self.in_flight is not None:  # runs the cell again, never the result in hand
            observation = self.in_flight.run_again(cell)
        elif self.in_flight is not None and item.nodeid in self.in_flight:
            observation = self.in_flight.result(item.nodeid)
        else:
            observation = session.run(cell)
        baseline = self.baseline_of(cell)
        judgement = judge(cell, observation, baseline)
        properties: list[tuple[str, object]] = [*cell_properties(cell, observation, baseline, judgement),
                                                *attempt_properties(attempts, judgement)]
        earlier = set(self.properties_added.get(item.nodeid, ()))  # an earlier attempt's, replaced
        item.user_properties[:] = [p for p in item.user_properties if p not in earlier] + properties
        self.properties_added[item.nodeid] = properties
        if observation.commands:
            item.add_report_section("setup", "hvsock-matrix commands", "\n".join(observation.commands))
        result = CellResult.from_cell(cell, observation, baseline=baseline, seq=self.order.get(cell.id),
                                      judgement=judgement)
        result.attempts = list(attempts)
        attempts.append({"observation": observation.to_dict(), **judgement.to_dict()})
        self.cell_data[item.nodeid] = {
            "cell": result.to_dict(),
            "facts": session.new_facts(cell, observation),
            "inventory": {"name": session.inventory.name, "path": str(session.inventory.path)},
            "worker": self.worker_id,
        }
        return judgement

    def record_not_run(self, item: pytest.Item, cell: Cell) -> None:
        """A cell this lab cannot run (no node for it) still reaches the run, as "not run here" with
        its documented expectation, so every document's matrix is shown next to what did run."""
        assert cell.skip_reason
        observation = Observation(Outcome.NA, detail=f"not run here: {needs_text(cell.skip_reason)}",
                                  extra={"not_run": cell.skip_reason})
        judgement = Judgement("skip", cell.skip_reason)
        self.cell_data[item.nodeid] = {
            "cell": CellResult.from_cell(cell, observation, seq=self.order.get(cell.id), judgement=judgement).to_dict(),
            "facts": {}, "inventory": None, "worker": self.worker_id}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        report = yield
        result = self.cell_data.pop(item.nodeid, None) if call.when == "setup" else None
        if call.when == "setup" and result is not None:
            setattr(report, REPORT_ATTR, result)
            _add_html_extra(report, result["cell"]["observation"].get("commands") or [])
        if report.failed and call.when == "setup" and call.excinfo and isinstance(call.excinfo.value, HarnessError):
            report.longrepr = str(call.excinfo.value)  # an E is one line, not a traceback
        return report

    # -- controller: collect, then write ---------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, REPORT_ATTR, None)
        if self.recorder is None or not data:
            return
        if data.get("inventory"):
            self.recorder.update_meta(inventory=data["inventory"])
        for node, facts in (data.get("facts") or {}).items():
            self.recorder.add_facts(node, facts)
        self.recorder.add(CellResult.from_dict(data["cell"]), worker=data.get("worker"))  # journaled at once

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: the Hyper-V GUIDs a finished worker kept, to remove at the end."""
        added = (getattr(node, "workeroutput", None) or {}).get(WORKEROUTPUT) or {}
        for host, guids in added.items():
            self.registrations.setdefault(host, set()).update(guids)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """The one end of a run: close this process's nodes, then (controller) write the run."""
        self._close_session()
        if self.recorder is None:
            return
        keep = bool(self.config.getoption("keep_registration", False))
        if self.registrations:
            inventory, _ = self.inventory_or_error()
            if inventory is not None:
                self.done["problems"] = remove_registrations(inventory, self.registrations, keep)
        if not self.recorder.has_results():
            return
        from harness.report import write_run_reports

        try:
            self.done["results"] = self.recorder.finish()
            report, paths = write_run_reports(self.recorder.run, self.recorder.results_dir,
                                              baseline=self.recorder.baseline)
            self.done.update(paths)
            self.done["report"] = report
        except (OSError, HarnessError) as err:
            self.done["error"] = f"hvsock-matrix: could not write the results: {err}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _close_session(self) -> None:
        if self.in_flight is not None:  # first: the cells in flight stop their own servers
            scheduler, self.in_flight = self.in_flight, None
            scheduler.cancel()
        if self.session is None:
            return
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKEROUTPUT] = self.session.registrations_added
        try:
            self.session.close()
        finally:
            self.session = None

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if self.done:
            write_summary(terminalreporter, self.done, self.baseline_warning)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Nodes are closed even when the session never finished (a usage error, an interrupt)."""
        self._close_session()


def results_dir_problem(folder: Path) -> str | None:
    """Why `folder` cannot hold the run's files (its nearest existing part is not a writable folder), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _add_html_extra(report: pytest.TestReport, commands: list[str]) -> None:
    """pytest-html (when installed) shows the commands a cell ran, as its docs say: report.extras."""
    try:
        from pytest_html import extras
    except ImportError:
        return
    if commands:
        extra = extras.text("\n".join(commands), name="hvsock-matrix commands")
        setattr(report, "extras", [*getattr(report, "extras", []), extra])  # noqa: B010  pytest-html's attribute


def _runnable_cells(items: list[pytest.Item]) -> list[Cell]:
    cells = [getattr(item, "cell", None) for item in items]
    return [c for c in cells if isinstance(c, Cell) and not c.skip_reason]


def needs_text(skip_reason: str) -> str:
    """`needs windows-host` from `inventory lab-in-a-box has no windows-host node`; else the reason."""
    found = re.search(r"has no (\S+) node", skip_reason)
    return f"needs {found[1]}" if found else skip_reason

