"""pytest side of results and reports: one run id per pytest run, xdist merge, files, terminal matrix.

Registered by harness/plugin.py (which owns the --baseline and --results-dir options). The
controller creates the run id and resolves `--baseline` in pytest_configure and hands both to
xdist workers through `workerinput`; every process records into its own part file; the
controller merges them in pytest_sessionfinish, writes results.json, matrix.html, matrix.md,
and prints the matrix in pytest_terminal_summary. Runs that record no cell (the harness's own
unit tests) write nothing.
"""
from __future__ import annotations

import html as _html
from pathlib import Path
from typing import Any

import pytest

from harness.cell import Cell
from harness.errors import HarnessError, InputError
from harness.outcome import Observation
from harness.results import Recorder, new_run_id, resolve_run, load_run, utc_now

RUN_KEY = pytest.StashKey[dict]()
RECORDER_KEY = pytest.StashKey[Recorder]()
DONE_KEY = pytest.StashKey[dict]()
ORDER_KEY = pytest.StashKey[dict]()
WORKERINPUT = "hvsock_matrix_run"


def _results_dir(config: pytest.Config) -> Path:
    option = config.getoption("results_dir", None)
    base = Path(config.invocation_params.dir)
    return (base / option) if option else Path(config.rootpath) / "reports"


def _resolve_baseline(config: pytest.Config, results_dir: Path) -> tuple[str | None, str | None]:
    """(path, warning). A missing `last` is a warning (first night); a bad FILE stops the run."""
    ref = config.getoption("baseline", None)
    if not ref:
        return None, None
    try:
        path = resolve_run(str(ref), results_dir)
        load_run(path)
    except InputError as err:
        if ref in ("last", "latest", "previous"):
            return None, f"--baseline {ref}: {err}; running without a baseline"
        raise pytest.UsageError(f"--baseline: {err}") from None
    return str(path), None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and WORKERINPUT in workerinput:
        info = dict(workerinput[WORKERINPUT])
        info["worker_id"] = workerinput.get("workerid")
    else:
        results_dir = _results_dir(config)
        baseline, warning = _resolve_baseline(config, results_dir)
        info = {"run_id": new_run_id(), "started": utc_now(), "results_dir": str(results_dir),
                "baseline_path": baseline, "baseline_warning": warning,
                "pytest_args": [str(a) for a in config.invocation_params.args], "worker_id": None}
    config.stash[RUN_KEY] = info
    if config.pluginmanager.hasplugin("html"):
        config.pluginmanager.register(PytestHtmlSummary(config), "hvsock-matrix-html-summary")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller -> worker: the same run id, start time and resolved baseline."""
    info = dict(node.config.stash[RUN_KEY])
    info.pop("worker_id", None)
    node.workerinput[WORKERINPUT] = info


def get_recorder(config: pytest.Config) -> Recorder:
    """The Recorder of this pytest process (created on first use; one per process)."""
    recorder = config.stash.get(RECORDER_KEY, None)
    if recorder is None:
        info = config.stash[RUN_KEY]
        meta = {key: info.get(key) for key in ("run_id", "started", "pytest_args", "worker_id")}
        if info.get("baseline_path"):
            meta["baseline_path"] = info["baseline_path"]
        recorder = Recorder(Path(info["results_dir"]), meta)
        recorder.order = config.stash.get(ORDER_KEY, {})
        config.stash[RECORDER_KEY] = recorder
    return recorder


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember collection order so the merged run keeps the scenario files' order of cells."""
    order: dict[str, int] = {}
    for index, item in enumerate(session.items):
        cell = getattr(item, "cell", None)
        order.setdefault(cell.id if isinstance(cell, Cell) else item.name, index)
    session.config.stash[ORDER_KEY] = order
    recorder = session.config.stash.get(RECORDER_KEY, None)
    if recorder is not None:
        recorder.order = order


def annotate_item(item: pytest.Item, cell: Cell, observation: Observation) -> None:
    """JUnit XML (pytest --junitxml) properties of one cell: expected, observed, errno, flip."""
    recorder = get_recorder(item.config)
    base = recorder.baseline_observation(cell.id)
    props = [("cell", cell.id),
             ("expected", cell.expected.value if cell.expected is not None else "?"),
             ("observed", observation.outcome.value),
             ("summary", observation.summary())]
    if observation.errno_name or observation.errno is not None:
        props.append(("errno", f"{observation.errno_name or ''} {observation.errno if observation.errno is not None else ''}".strip()))
    if observation.bind_errno_name or observation.bind_errno is not None:
        props.append(("bind_errno", f"{observation.bind_errno_name or ''} {observation.bind_errno if observation.bind_errno is not None else ''}".strip()))
    if observation.elapsed_ms is not None:
        props.append(("elapsed_ms", f"{observation.elapsed_ms:.1f}"))
    if base is not None:
        props.append(("baseline", base.outcome.value))
        flip = recorder.flip_of(cell.id, observation)
        if flip:
            props.append(("flip", flip))
    item.user_properties.extend(props)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Worker: close its part. Controller: merge every part, write results and reports."""
    config = session.config
    info = config.stash.get(RUN_KEY, None)
    if info is None:
        return
    recorder = config.stash.get(RECORDER_KEY, None)
    if info.get("worker_id"):
        if recorder is not None:
            recorder.finish()
        return
    if recorder is None:
        probe = Recorder(Path(info["results_dir"]), {"run_id": info["run_id"]})
        if not probe.has_results():
            return
        recorder = get_recorder(config)
    if not recorder.has_results():
        return
    from harness.report import write_run_reports

    done: dict[str, Any] = {}
    try:
        done["results"] = recorder.finish()
        report, paths = write_run_reports(recorder.run, recorder.results_dir, baseline=recorder.baseline)
        done.update(paths)
        done["report"] = report
    except (OSError, HarnessError) as err:
        done["error"] = f"hvsock-matrix: could not write the results: {err}"
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR  # a nightly job must not pass with no matrix
    config.stash[DONE_KEY] = done


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    done = config.stash.get(DONE_KEY, None)
    info = config.stash.get(RUN_KEY, None) or {}
    if not done:
        return
    from harness.report.terminal import render_terminal

    terminalreporter.write_sep("=", "hvsock-matrix")
    if info.get("baseline_warning"):
        terminalreporter.write_line(info["baseline_warning"], yellow=True)
    if "error" in done:
        terminalreporter.write_line(done["error"], red=True, bold=True)
    if "report" in done:
        for line in render_terminal(done["report"]).splitlines():
            terminalreporter.write_line(line, red=line.startswith("  * "), bold=line.startswith("  * "),
                                        yellow=line.startswith("  ! "))
    for key in ("results", "html", "md"):
        if key in done:
            terminalreporter.write_line(f"{key}: {done[key]}")


class PytestHtmlSummary:
    """pytest-html users get the matrix in their report (registered only when pytest-html is)."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list, session: Any) -> None:
        done = self.config.stash.get(DONE_KEY, None)
        if not done or "html" not in done:
            return
        path = Path(done["html"])
        try:
            page = path.read_text(encoding="utf-8")
        except OSError:
            return
        prefix.append(
            f'<p>hvsock-matrix: <a href="{_html.escape(path.as_uri())}">{_html.escape(str(path))}</a></p>'
            f'<iframe class="hvsock-matrix" title="hvsock-matrix connectivity matrix" '
            f'style="width:100%;height:70vh;border:1px solid #ccc" srcdoc="{_html.escape(page, quote=True)}"></iframe>')
