"""One run of cells inside one pytest process (controller or xdist worker).

It owns what must live for the whole run and no longer: the inventory, one AgentPool (one
connection and one resident probe per node, because a fresh SSH connection to a nested lab
guest costs ~55 s), the Hyper-V service registration, and the recorder. Every cell then costs
round-trips only. Everything is closed when pytest unconfigures, even after a failure.
"""
from __future__ import annotations

import contextlib
import threading
import time

import pytest

from harness.cell import Cell
from harness.errors import HarnessError
from harness.outcome import Observation, Outcome
from harness.verdict import judge

_SESSION_KEY = pytest.StashKey["RunSession"]()
LAB_INVENTORY_NAME = "lab-in-a-box"


def get_session(config: pytest.Config) -> "RunSession":
    session = config.stash.get(_SESSION_KEY, None)
    if session is None:
        session = RunSession(config)
        config.stash[_SESSION_KEY] = session
        config.add_cleanup(session.close)
    return session


class RunSession:
    def __init__(self, config: pytest.Config):
        self.config = config
        self._inventory = None
        self._pool = None
        self._registration = None
        self._registration_error: str | None = None
        self._lab_error: str | None = None
        self._lab_checked = False
        self._facts_done: set[str] = set()
        self._facts: dict[str, dict] = {}
        self._warmed = False
        self._scheduler = None  # cells in flight (harness/in_flight.py), started after the warm-up
        self._scheduler_checked = False
        self._say_lock = threading.Lock()

    # -- lazily built, once per run ------------------------------------------------------------

    @property
    def inventory(self):
        if self._inventory is None:
            from harness.plugin import get_inventory

            inventory = get_inventory(self.config)
            if inventory is None:
                raise HarnessError("no inventory: pass --inventory FILE or start the lab (hvsock-matrix lab up)")
            self._inventory = inventory
        return self._inventory

    def _say(self, line: str) -> None:
        """A progress line on the terminal now, even while pytest captures the running test."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            print(line, flush=True)
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        with self._say_lock, (capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()):
            reporter.ensure_newline()
            reporter.write_line(line)

    def _ensure_lab(self) -> None:
        """The embedded lab is booted (or reused) on first use, never at collection."""
        if self._lab_checked or self.inventory.name != LAB_INVENTORY_NAME:
            return
        self._lab_checked = True
        from harness.inventory import load_inventory
        from harness.lab import ensure_lab, lab_is_up, lifecycle

        if lab_is_up():
            path = lifecycle.status().get("inventory")
        else:
            try:
                path = ensure_lab(progress=lambda line: self._say(f"[lab] {line}"))
            except HarnessError as err:
                self._lab_error = str(err)
                return
        # the running lab's own inventory: its SSH port may differ from the checked-in default's
        if path and str(path) != str(self._inventory.path) and self._pool is None:
            try:
                self._inventory = load_inventory(path)
            except HarnessError as err:
                self._lab_error = f"{path}: {err}"

    @property
    def pool(self):
        if self._pool is None:
            from harness.agents import AgentPool

            self._pool = AgentPool(self.inventory, mode=self.config.getoption("probe_mode", None) or "session")
        return self._pool

    def _register_services(self, item: pytest.Item | None) -> None:
        """Register every service GUID the run's cells use on each Hyper-V host, once."""
        if self._registration is not None or self._registration_error is not None:
            return
        hosts = [n for n in self.inventory.nodes.values() if n.os == "windows" and n.role == "host"]
        if not hosts:
            self._registration = False
            return
        from harness.hyperv.registration import RegistrationGuard

        items = item.session.items if item is not None else []
        cells = [i.cell for i in items if isinstance(getattr(i, "cell", None), Cell) and not i.cell.skip_reason]
        # An xdist worker never removes: another worker may still need the GUIDs. It leaves a
        # note of what it added and the controller removes it all at the end of the run.
        worker = getattr(self.config, "workerinput", None) is not None
        keep = bool(self.config.getoption("keep_registration", False)) or worker
        guard = RegistrationGuard(self.inventory, cells=cells, keep=keep,
                                  transport_for=lambda node: self.pool.transport(node.name), strict=False)
        try:
            guard.__enter__()
        except HarnessError as err:
            self._registration_error = str(err)
            return
        self._registration = guard
        if worker and any(guard.added.values()):
            from harness.report.pytest_hooks import get_recorder
            from harness.results import write_json_atomic

            recorder = get_recorder(self.config)
            write_json_atomic(recorder.run_dir / "registration" / f"{recorder.part_name}.json", guard.added)

    def _registration_failure(self, cell: Cell) -> str | None:
        """A cell touching a Hyper-V host whose registration failed is E, never X."""
        if self._registration_error:
            return f"service registration failed: {self._registration_error}"
        errors = getattr(self._registration, "errors", None) or {}
        for name in (cell.server_on, cell.client_on):
            node = self.inventory.nodes.get(name)
            for host in (name, node.parent if node else None):
                if host in errors:
                    return f"service registration failed on {host}: {errors[host]}"
        return None

    def _warm_up(self, item: pytest.Item | None) -> None:
        """Start every node's agent at once, before the first cell, and keep each node's facts.

        An xdist worker starts a node's agent when its first cell needs it: it runs only some
        of the cells, so warming every node would start probes it never uses."""
        if self._warmed or item is None or getattr(self.config, "workerinput", None) is not None:
            return
        self._warmed = True
        names = sorted({name for i in item.session.items
                        if isinstance(getattr(i, "cell", None), Cell) and not i.cell.skip_reason
                        for name in (i.cell.server_on, i.cell.client_on) if name in self.inventory.nodes})
        if len(names) >= 2:
            self._say(f"[run] starting the probe on {', '.join(names)} at once")
            t0 = time.monotonic()
            self._facts.update(self.pool.facts(names))
            failed = sorted(name for name, facts in self._facts.items() if "error" in facts)
            self._say(f"[run] probes ready in {time.monotonic() - t0:.0f} s"
                      + (f" (no probe on {', '.join(failed)}: its cells will say why)" if failed else ""))

    def _record_facts(self, recorder, node_name: str) -> None:
        if node_name in self._facts_done:
            return
        self._facts_done.add(node_name)
        facts = self._facts.get(node_name)
        if facts is None or "error" in facts:
            try:
                facts = self.pool.agent(node_name).info()
            except HarnessError as err:
                facts = {"error": str(err)}
        facts = {k: v for k, v in facts.items() if k not in ("id", "event")}
        recorder.set_node_facts(node_name, facts)

    # -- the one call a pytest item makes ------------------------------------------------------

    def run(self, cell: Cell, item: pytest.Item | None = None) -> Observation:
        self._ensure_lab()
        if self._lab_error:
            return Observation(Outcome.E, detail=f"lab-in-a-box did not come up: {self._lab_error}")
        self._warm_up(item)
        self._register_services(item)
        if not self._scheduler_checked and item is not None:
            from harness import in_flight

            self._scheduler_checked = True
            _ = self.pool  # built here, once: the scheduler's threads share it
            self._scheduler = in_flight.start(self.config, item.session.items, self._run_cell)
        if self._scheduler is not None and item is not None and item.nodeid in self._scheduler:
            return self._scheduler.result(item.nodeid)
        return self._run_cell(cell)

    def _run_cell(self, cell: Cell) -> Observation:
        """One cell, in the item or in the scheduler's thread: it touches nothing of pytest."""
        from harness.runner import run_cell

        failure = self._registration_failure(cell)
        if failure:
            return Observation(Outcome.E, detail=failure)
        return run_cell(cell, self.inventory, self.pool)

    def run_and_judge(self, cell: Cell, item: pytest.Item | None = None) -> None:
        from harness.report.pytest_hooks import annotate_item, get_recorder

        recorder = get_recorder(self.config)
        observation = self.run(cell, item)  # first: it may switch to the running lab's own inventory
        if not recorder.meta.get("inventory"):
            recorder.update_meta(inventory={"name": self.inventory.name, "path": str(self.inventory.path)})
        for node_name in (cell.server_on, cell.client_on):
            if observation.outcome is not Outcome.NA and node_name in self.inventory.nodes:
                self._record_facts(recorder, node_name)
        recorder.record(cell, observation)
        if item is not None:
            annotate_item(item, cell, observation)
        verdict = judge(cell, observation, recorder.flip_of(cell.id, observation))
        if verdict.kind == "skip":
            pytest.skip(verdict.message)
        if verdict.kind == "fail":
            pytest.fail(verdict.message, pytrace=False)

    def close(self) -> None:
        if self._scheduler is not None:  # first: the cells in flight stop their own servers
            self._scheduler.cancel()
            self._scheduler = None
        try:
            if self._registration:
                self._registration.__exit__(None, None, None)
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool = None



def remove_worker_registrations(config: pytest.Config, run_dir) -> list[str]:
    """Controller side of an xdist run: remove every GUID the workers registered.

    Returns one line per problem (printed by the caller); nothing is removed with
    --keep-registration.
    """
    import json

    from harness.hyperv.registration import unregister_guids
    from harness.plugin import get_inventory
    from harness.transports import open_transport

    folder = run_dir / "registration"
    if not folder.is_dir():
        return []
    added: dict[str, set[str]] = {}
    for note in sorted(folder.glob("*.json")):
        for host, guids in json.loads(note.read_text(encoding="utf-8")).items():
            added.setdefault(host, set()).update(guids)
    if config.getoption("keep_registration", False):
        return []
    problems = []
    inventory = get_inventory(config)
    for host, guids in added.items():
        transport = None
        try:
            transport = open_transport(inventory.nodes[host], inventory)
            unregister_guids(transport, sorted(guids))
        except (HarnessError, KeyError) as err:
            problems.append(f"hvsock-matrix: could not remove service registrations on {host}: {err}")
        finally:
            if transport is not None:
                transport.close()
    for note in folder.glob("*.json"):
        note.unlink()
    folder.rmdir()
    return problems
