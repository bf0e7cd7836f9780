"""What must live for a whole run where cells run (a pytest process, or one xdist worker).

It owns the inventory in use, the lab-in-a-box (booted in session setup, before the first
cell), one AgentPool (one connection and one resident probe per node, because a fresh SSH
connection to a nested lab guest costs ~55 s) and the Hyper-V service registration. Every cell
then costs round-trips only. It knows nothing of pytest: harness/lifecycle.py drives it.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cell import Cell
from harness.errors import HarnessError
from harness.node import Inventory
from harness.outcome import Observation, Outcome

if TYPE_CHECKING:
    from harness.agents import AgentPool
    from harness.hyperv.registration import RegistrationGuard

LAB_INVENTORY_NAME = "lab-in-a-box"
log = logging.getLogger("hvsock_matrix.session")


class RunSession:
    """`start(cells)` once (session setup), `run(cell)` per cell, `close()` at the end.

    Failures of the setup never raise: they are kept and every cell they touch becomes E.
    """

    def __init__(self, inventory: Inventory, *, probe_mode: str = "session", keep_registration: bool = False,
                 say: Callable[[str], None] | None = None, warm_up: bool = True, owner: str | None = None):
        self.inventory = inventory
        self.probe_mode = probe_mode
        self.keep_registration = keep_registration
        self.owner = owner  # the owner tag service GUIDs are registered under (xdist: the controller's)
        self._say = say or log.info
        self._pool: AgentPool | None = None
        self._exit = contextlib.ExitStack()  # what session setup entered, left in reverse at close()
        self._registration: RegistrationGuard | None = None
        self.vm_id_errors: dict[str, str] = {}
        self._registration_error: str | None = None
        self._lab_error: str | None = None
        self._facts: dict[str, dict] = {}
        self._facts_sent: set[str] = set()
        self._started = False
        # an xdist worker runs only some cells: it starts a node's probe when a cell first needs it
        self._warm_up_all = warm_up

    # -- session setup -------------------------------------------------------------------------

    def start(self, cells: list[Cell]) -> None:
        """Boot (or reuse) the lab, start every node's probe at once, register service GUIDs."""
        if self._started:
            return
        self._started = True
        cells = [c for c in cells if not c.skip_reason]
        self._ensure_lab()
        if self._lab_error:
            return
        _ = self.pool  # built once, here: cells in flight share it from their threads
        if self._warm_up_all:
            self._warm_up(cells)
        self._fill_vm_ids(cells)
        self._register_services(cells)

    def _ensure_lab(self) -> None:
        """The embedded lab is booted (or reused) in session setup, never at collection."""
        if self.inventory.name != LAB_INVENTORY_NAME:
            return
        if self.inventory.path and (Path(self.inventory.path).parent / "lab.json").exists():
            return  # a lab's own written inventory (lab up --port/--netns/--hybrid): used as given, never swapped
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
        if path and str(path) != str(self.inventory.path) and self._pool is None:
            try:
                self.inventory = load_inventory(path)
            except HarnessError as err:
                self._lab_error = f"{path}: {err}"

    @property
    def pool(self):
        if self._pool is None:
            from harness.agents import AgentPool

            self._pool = AgentPool(self.inventory, mode=self.probe_mode)
        return self._pool

    def _warm_up(self, cells: list[Cell]) -> None:
        """Start every node's agent at once, before the first cell, and keep each node's facts."""
        names = sorted({name for c in cells for name in (c.server_on, c.client_on) if name in self.inventory.nodes})
        if len(names) < 2:
            return
        self._say(f"[run] starting the probe on {', '.join(names)} at once")
        t0 = time.monotonic()
        self._facts.update(self.pool.facts(names))
        failed = sorted(name for name, facts in self._facts.items() if "error" in facts)
        self._say(f"[run] probes ready in {time.monotonic() - t0:.0f} s"
                  + (f" (no probe on {', '.join(failed)}: its cells will say why)" if failed else ""))

    def _fill_vm_ids(self, cells: list[Cell]) -> None:
        """VM nodes the cells use and the inventory gives no vm_id: from the VM's own probe facts
        (Windows registry, Linux KVP pool), else its Hyper-V host's Get-VM (harness/hyperv/vmids.py).
        An inventory value is never replaced; the doctor reports a disagreement."""
        from harness.hyperv import vmids

        used = {name for c in cells for name in (c.server_on, c.client_on)}
        missing = [n.name for n in self.inventory.nodes.values() if n.role == "vm" and not n.vm_id and n.name in used]
        if not missing:
            return
        for name in missing:
            if name not in self._facts:
                try:
                    self._facts[name] = self.pool.agent(name).info()
                except HarnessError as err:
                    self._facts[name] = {"error": str(err)}
        views, self.vm_id_errors = vmids.gather_views(self.inventory, self._facts,
                                                      lambda node: self.pool.transport(node.name), only=missing)
        self.inventory = vmids.fill_vm_ids(self.inventory, views)
        self.pool.inventory = self.inventory
        found = {n: self.inventory.nodes[n].vm_id for n in missing if self.inventory.nodes[n].vm_id}
        if found:
            self._say("[run] VM IDs from the nodes: " + ", ".join(f"{n} {v}" for n, v in sorted(found.items())))

    def _register_services(self, cells: list[Cell]) -> None:
        """Register every service GUID the run's cells use on each Hyper-V host, once.

        Keeps them (keep=True) when asked to, or when this process is one of several xdist
        workers: the others may still need the GUIDs; the controller removes what every worker
        added at the end (remove_registrations). Workers register under the controller's owner
        tag, so a killed run's GUIDs are swept by the next run either way.
        """
        hosts = [n for n in self.inventory.nodes.values() if n.os == "windows" and n.role == "host"]
        if not hosts:
            return
        from harness.hyperv.registration import RegistrationGuard

        guard = RegistrationGuard(self.inventory, agent_for=lambda node: self.pool.agent(node.name), cells=cells,
                                  keep=self.keep_registration, strict=False, owner=self.owner)
        try:
            self._registration = self._exit.enter_context(guard)
        except HarnessError as err:
            self._registration_error = str(err)

    @property
    def registrations_added(self) -> dict[str, list[str]]:
        """host -> service GUIDs this process registered (and kept, when keep_registration)."""
        added = getattr(self._registration, "added", None) or {}
        return {host: sorted(guids) for host, guids in added.items() if guids}

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

    # -- per cell ------------------------------------------------------------------------------

    def run(self, cell: Cell) -> Observation:
        """One cell's observation; whatever the harness or the lab got wrong is E with the reason."""
        from harness.runner import run_cell, scrub_observation

        self.start([cell])
        if self._lab_error:
            return scrub_observation(Observation(Outcome.E, detail=f"lab-in-a-box did not come up: {self._lab_error}"))
        failure = self._registration_failure(cell)
        if failure:
            return scrub_observation(Observation(Outcome.E, detail=failure))
        return run_cell(cell, self.inventory, self.pool)

    def new_facts(self, cell: Cell, observation: Observation) -> dict[str, dict]:
        """Facts of the cell's nodes not yet handed on by this process (each node once)."""
        out: dict[str, dict] = {}
        if observation.outcome is Outcome.NA:
            return out
        for name in (cell.server_on, cell.client_on):
            if name in self._facts_sent or name not in self.inventory.nodes:
                continue
            self._facts_sent.add(name)
            facts = self._facts.get(name)
            if facts is None or "error" in facts:
                try:
                    facts = self.pool.agent(name).info()
                except HarnessError as err:
                    facts = {"error": str(err)}
            out[name] = {k: v for k, v in facts.items() if k not in ("id", "event")}
        return out

    def close(self) -> None:
        try:
            self._exit.close()  # the registration guard removes what this run added (unless kept)
        finally:
            self._registration = None
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def remove_registrations(inventory: Inventory, added: dict[str, set[str]], keep: bool) -> list[str]:
    """Controller side of an xdist run: remove every GUID the workers registered (under this
    process's owner tag) and kept. Returns one line per problem; nothing is removed with keep."""
    from harness.agents import AgentPool
    from harness.hyperv.registration import unregister_guids

    if keep or not added:
        return []
    problems = []
    with AgentPool(inventory, mode="oneshot") as pool:
        for host, guids in added.items():
            try:
                unregister_guids(pool.agent(host), sorted(guids))
            except (HarnessError, KeyError) as err:
                problems.append(f"hvsock-matrix: could not remove service registrations on {host}: {err}")
    return problems
