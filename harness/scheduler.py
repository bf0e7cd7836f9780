"""Cells in flight: run cells ahead of pytest's item loop, several at once, in collection order.

A matrix is mostly waiting (an X that waits for its connect timeout, a process start on a nested
guest), so a run that overlaps its cells costs its slowest cells, not their sum. pytest still
asks for the cells one by one, in its own order (`result`); the scheduler has usually finished
them by then. Cells never disturb each other:

- at most `in_flight` cells at once, at most `per_node` touching one node (a slow nested guest
  is not flooded), at most `spawning` of the drivers that start processes (socat, command);
- cells that truly cannot overlap never do: they share a claim (`claims`: the cell's port and
  service, and every fixed port a command template names, such as C3's relay on port 22);
  such cells run one after another, in collection order;
- at most `window` cells ahead of the one pytest waits for, so -x/--maxfail wastes little.

`cancel` (end of the run, -x, Ctrl-C) starts nothing more and waits for the cells in flight to
finish their own cleanup (each driver stops its server in a finally), so nothing is left on
any node. Results are only handed out, never recorded here: the caller records what pytest
reports, so a cell is recorded once, and a cell that never ran is never recorded.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from harness.cell import Cell
from harness.outcome import Observation, Outcome

SPAWNING_DRIVERS = ("socat", "command")
# a number a command template writes as a port: inside an address, after ':' or '=' (socat's
# TCP:localhost:22 and VSOCK-LISTEN:22, port=22), before a separator; `sleep 300` is no port
_FIXED_PORT = re.compile(r"(?<=[:=])(\d{1,10})(?=$|[\s,:'\"/])")


@dataclass(frozen=True)
class Limits:
    """How much runs at once. in_flight=1 is the sequential run, cell after cell."""

    in_flight: int = 8
    per_node: int = 4
    spawning: int = 2
    window: int = 0  # cells ahead of pytest's current one; 0 = max(32, 4 * in_flight)

    def __post_init__(self) -> None:
        for name in ("in_flight", "per_node", "spawning"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")

    @property
    def ahead(self) -> int:
        return self.window or max(32, 4 * self.in_flight)


def spawns(cell: Cell) -> bool:
    """The cell's driver starts programs on its nodes (each start costs 10-50 s on a nested guest)."""
    return cell.driver.kind in SPAWNING_DRIVERS


def fixed_ports(template: str | None) -> set[int]:
    """Ports a command template writes literally (e.g. `TCP:localhost:22`), placeholders left out."""
    if not template:
        return set()
    text = re.sub(r"\{[^{}]*\}", " ", template)
    return {int(m.group(1)) for m in _FIXED_PORT.finditer(text)}


def claims(cell: Cell) -> frozenset[Hashable]:
    """What the cell holds exclusively while it runs: two cells with a common claim never overlap.

    The port (whatever the family: a Hyper-V service GUID is made from it, and a vsock client
    aimed at a parent or a loopback reaches listeners on other nodes than the server's), an
    explicit service GUID, and every fixed port of a command template: a relay such as
    `socat VSOCK-LISTEN:22,fork TCP:localhost:22` stays bound until the cell kills it.
    """
    out: set[Hashable] = {("port", int(cell.port))}
    if cell.service:
        out.add(("service", cell.service))
    if cell.driver.kind == "command":
        for template in (cell.driver.server, cell.driver.client):
            out.update(("port", port) for port in fixed_ports(template))
    return frozenset(out)


def nodes_of(cell: Cell) -> frozenset[str]:
    return frozenset((cell.server_on, cell.client_on))


class _Entry:
    __slots__ = ("cell", "claims", "key", "nodes", "observation", "spawns", "state")

    def __init__(self, key: Hashable, cell: Cell):
        self.key, self.cell = key, cell
        self.claims, self.nodes, self.spawns = claims(cell), nodes_of(cell), spawns(cell)
        self.state = "pending"  # pending -> running -> done | (pending ->) dropped
        self.observation: Observation | None = None


class CellScheduler:
    """Runs `run(cell)` for every (key, cell), ahead of the caller, under `limits`.

    `run` must not raise (harness.runner.run_cell never does); if it does, the cell is E.
    """

    def __init__(self, cells: Sequence[tuple[Hashable, Cell]], run: Callable[[Cell], Observation],
                 limits: Limits = Limits(), name: str = "cell"):
        self.limits = limits
        self._run = run
        self._name = name
        self._entries = [_Entry(key, cell) for key, cell in cells]
        self._by_key: dict[Hashable, int] = {}
        for index, entry in enumerate(self._entries):
            if entry.key in self._by_key:
                raise ValueError(f"cell key {entry.key!r} given twice")
            self._by_key[entry.key] = index
        self._cond = threading.Condition()
        self._next = 0  # index of the first entry not yet handed out: the window starts here
        self._scan_from = 0  # every entry before it has left "pending"
        self._running = 0
        self._spawning = 0
        self._per_node: dict[str, int] = {}
        self._held: set[Hashable] = set()
        self._threads: set[threading.Thread] = set()
        self._cancelled = False
        self._started = False
        self.peak_in_flight = 0  # for tests and benchmarks: the most cells that ever ran at once

    # -- the caller's side ----------------------------------------------------------------------

    def __contains__(self, key: Hashable) -> bool:
        return key in self._by_key

    def start(self) -> CellScheduler:
        with self._cond:
            self._started = True
            self._fill()
        return self

    def result(self, key: Hashable) -> Observation:
        """The cell's Observation, waiting for it if needed. Cells before it that were never
        asked for (deselected at run time, skipped by pytest) are dropped: never run, or their
        result discarded."""
        with self._cond:
            index = self._by_key[key]
            if self._cancelled:
                raise RuntimeError("the scheduler was cancelled")
            if not self._started:
                self._started = True
            for skipped in range(self._next, index):
                self._drop(self._entries[skipped])
            self._next = max(self._next, index + 1)
            entry = self._entries[index]
            if entry.state == "dropped":
                raise KeyError(f"cell {key!r} was already handed out or dropped")
            self._fill()
            while entry.state != "done":
                self._cond.wait()
            entry.state = "dropped"  # handed out once
            observation, entry.observation = entry.observation, None
            assert observation is not None  # "done" is set with the observation, under the lock
            return observation

    def cancel(self, timeout: float | None = None) -> bool:
        """Start nothing more; wait for the cells in flight to end. True when none is left running."""
        with self._cond:
            self._cancelled = True
            for entry in self._entries:
                if entry.state == "pending":
                    entry.state = "dropped"
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        with self._cond:
            return self._running == 0

    def run_again(self, cell: Cell) -> Observation:
        """Run a cell once more, now, in the caller's thread (a rerun: pytest-rerunfailures), under the
        same limits and claims as the cells in flight, so it never overlaps one on the same port."""
        entry = _Entry(("again", cell.id), cell)
        with self._cond:
            while not (self._running < self.limits.in_flight and self._fits(entry)):
                self._cond.wait()
            self._running += 1
            self._spawning += entry.spawns
            self._held |= entry.claims
            for node in entry.nodes:
                self._per_node[node] = self._per_node.get(node, 0) + 1
        try:
            return self._run(cell)
        except BaseException as exc:  # as _work: a harness bug is this cell's E
            return Observation(Outcome.E, detail=f"harness error {exc.__class__.__name__}: {exc}")
        finally:
            with self._cond:
                self._running -= 1
                self._spawning -= entry.spawns
                self._held -= entry.claims
                for node in entry.nodes:
                    self._per_node[node] -= 1
                self._fill()
                self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._running

    # -- inside (under self._cond) ----------------------------------------------------------

    def _drop(self, entry: _Entry) -> None:
        if entry.state in ("pending", "done"):
            entry.state, entry.observation = "dropped", None

    def _fits(self, entry: _Entry) -> bool:
        limits = self.limits
        if entry.spawns and self._spawning >= limits.spawning:
            return False
        if entry.claims & self._held:
            return False
        return all(self._per_node.get(node, 0) < limits.per_node for node in entry.nodes)

    def _fill(self) -> None:
        """Start pending cells in order while they fit; a cell waiting for a claim keeps it from
        later cells, so cells sharing a port run in collection order."""
        if self._cancelled or not self._started:
            return
        while self._scan_from < len(self._entries) and self._entries[self._scan_from].state != "pending":
            self._scan_from += 1
        waiting_claims: set[Hashable] = set()
        end = min(len(self._entries), self._next + self.limits.ahead)
        index = self._scan_from
        while index < end and self._running < self.limits.in_flight:
            entry = self._entries[index]
            index += 1
            if entry.state != "pending":
                continue
            if entry.claims & waiting_claims or not self._fits(entry):
                waiting_claims |= entry.claims
                continue
            self._launch(entry)

    def _launch(self, entry: _Entry) -> None:
        entry.state = "running"
        self._running += 1
        self.peak_in_flight = max(self.peak_in_flight, self._running)
        self._spawning += entry.spawns
        self._held |= entry.claims
        for node in entry.nodes:
            self._per_node[node] = self._per_node.get(node, 0) + 1
        thread = threading.Thread(target=self._work, args=(entry,), name=f"{self._name}-{entry.cell.id}",
                                  daemon=True)
        self._threads.add(thread)
        thread.start()

    def _work(self, entry: _Entry) -> None:
        try:
            observation = self._run(entry.cell)
        except BaseException as exc:  # never lose a cell to a harness bug: it is E and says why
            observation = Observation(Outcome.E, detail=f"harness error {exc.__class__.__name__}: {exc}")
        with self._cond:
            self._running -= 1
            self._spawning -= entry.spawns
            self._held -= entry.claims
            for node in entry.nodes:
                self._per_node[node] -= 1
            if entry.state == "running":
                entry.state, entry.observation = "done", observation
            self._threads.discard(threading.current_thread())
            self._fill()
            self._cond.notify_all()
