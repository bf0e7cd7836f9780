"""Two runs side by side, cell by cell: the model behind `hvsock-matrix diff --html/--md`.

A cell differs when its outcome, its connect errno or its bind errno changed, or when it ran in
only one of the runs. Times are shown but never make a cell differ (they are noise under TCG).
Differing cells come first, in the runs' own cell order; the nodes' kernels (from the node
facts each run keeps) head the comparison, since a kernel pair is what a nightly diff is about.

Twins (`compare_twins`): two matrices of the same bind/target tokens on different nodes -- the
kernel vsock host l1 with vm21/vm22 and the hybrid vsock host l1-hybrid with vm31/vm32 -- are
paired cell by cell through a node map (B's node -> A's node), not by id: a cell of B and its
twin in A have the same bind, target, socket type and driver, and mapped server/client nodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.outcome import Observation, Outcome
from harness.report import cells as words
from harness.results import CellResult, Run


def _errno_text(obs: Observation) -> str:
    if obs.outcome is Outcome.B:
        name, number = obs.bind_errno_name, obs.bind_errno
    else:
        name, number = obs.errno_name, obs.errno
    if name and number is not None:
        return f"{name} ({number})"
    return name or ("" if number is None else str(number))


@dataclass(frozen=True)
class Side:
    """One run's view of a cell, as plain strings."""

    outcome: str
    errno: str
    time: str
    detail: str

    @classmethod
    def of(cls, cell: CellResult | None) -> Side:
        if cell is None:
            return cls("", "", "", "not in this run")
        obs = cell.observation
        time = words.ms_text(obs.elapsed_ms) if obs.elapsed_ms is not None else ""
        return cls(obs.outcome.value, _errno_text(obs), time, obs.detail or "")


@dataclass(frozen=True)
class CellPair:
    id: str  # the cell's id; for twins "<A's id> ~ <B's id>"
    scenario: str
    a: CellResult | None
    b: CellResult | None

    @property
    def change(self) -> str:
        """Why the cell differs (`O->X`, `errno ETIMEDOUT->ECONNRESET`, `only in A`), or ""."""
        if self.a is None:
            return "only in B"
        if self.b is None:
            return "only in A"
        oa, ob = self.a.observation, self.b.observation
        if oa.outcome is not ob.outcome:
            return f"{oa.outcome.value}->{ob.outcome.value}"
        ea, eb = _errno_text(oa), _errno_text(ob)
        if ea != eb:
            return f"errno {ea or '-'}->{eb or '-'}"
        return ""

    @property
    def differs(self) -> bool:
        return bool(self.change)

    @property
    def sides(self) -> tuple[Side, Side]:
        return Side.of(self.a), Side.of(self.b)


@dataclass(frozen=True)
class RunDiff:
    a: Run
    b: Run
    pairs: list[CellPair]  # differing first

    @property
    def differing(self) -> list[CellPair]:
        return [p for p in self.pairs if p.differs]

    @property
    def same(self) -> list[CellPair]:
        return [p for p in self.pairs if not p.differs]

    def kernels(self) -> list[tuple[str, str, str]]:
        """(node, kernel in A, kernel in B) for every node either run has facts for."""
        fa, fb = node_kernels(self.a), node_kernels(self.b)
        return [(node, fa.get(node, ""), fb.get(node, "")) for node in sorted(set(fa) | set(fb))]


def node_kernels(run: Run) -> dict[str, str]:
    """node -> its kernel release, as the node itself reported it (probe facts)."""
    out = {}
    for node, facts in (run.meta.get("node_facts") or {}).items():
        if isinstance(facts, dict) and facts.get("kernel"):
            out[node] = str(facts["kernel"])
    return out


def compare_runs(a: Run, b: Run) -> RunDiff:
    order: dict[str, tuple[int, Any]] = {}
    for rank, run in enumerate((b, a)):  # B's order first, A's only cells after
        for cell in sorted(run.cells, key=CellResult.sort_key):
            order.setdefault(cell.id, (rank, len(order)))
    pairs = []
    for cell_id in sorted(order, key=order.__getitem__):
        ca, cb = a.cell(cell_id), b.cell(cell_id)
        present = cb or ca
        pairs.append(CellPair(cell_id, str(present.scenario or "") if present else "", ca, cb))
    return RunDiff(a, b, [p for p in pairs if p.differs] + [p for p in pairs if not p.differs])


# the lab-in-a-box: each hybrid node (B) and the kernel node it mirrors (A): harness/lab/inventory_file.py
LAB_TWINS = {"l1-hybrid": "l1", "vm31": "vm21", "vm32": "vm22"}


def parse_twins(text: str) -> dict[str, str]:
    """`lab` or `B1=A1,B2=A2`: B's node -> A's node; ValueError names what is wrong."""
    if text.strip() == "lab":
        return dict(LAB_TWINS)
    out: dict[str, str] = {}
    for part in text.split(","):
        b, sep, a = part.strip().partition("=")
        if not sep or not b.strip() or not a.strip():
            raise ValueError(f"--twins {text!r}: expected 'lab' or B_NODE=A_NODE[,B_NODE=A_NODE...], not {part!r}")
        if b.strip() in out:
            raise ValueError(f"--twins {text!r}: {b.strip()} is mapped twice")
        out[b.strip()] = a.strip()
    return out


def twin_key(cell: CellResult, nodes: dict[str, str] | None = None) -> tuple:
    """What a cell measures, with its nodes mapped: (server, bind, client, target, socket, driver)."""
    nodes = nodes or {}
    server, client = str(cell.server_on or ""), str(cell.client_on or "")
    return (nodes.get(server, server), cell.bind, nodes.get(client, client), cell.target,
            cell.socket or "stream", cell.driver)


def compare_twins(a: Run, b: Run, twins: dict[str, str]) -> RunDiff:
    """Each cell of B next to its twin in A (see the module docstring); B's cells without one stay
    alone ("only in B"). A's cells that no B cell mirrors are left out: A is the reference matrix."""
    in_a: dict[tuple, CellResult] = {}
    for cell in sorted(a.cells, key=CellResult.sort_key):
        in_a.setdefault(twin_key(cell), cell)
    pairs = []
    for cell in sorted(b.cells, key=CellResult.sort_key):
        twin = in_a.get(twin_key(cell, twins))
        pairs.append(CellPair(f"{twin.id} ~ {cell.id}" if twin else cell.id, str(cell.scenario or ""), twin, cell))
    return RunDiff(a, b, [p for p in pairs if p.differs] + [p for p in pairs if not p.differs])
