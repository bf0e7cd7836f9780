"""An xdist worker starts a node's probe only when one of its cells needs it (RunSession warm_up=False);
the single process (or controller) starts every node's probe at once before the first cell."""
from __future__ import annotations

from harness.cell import Cell
from harness.node import Access, Inventory, Node
from harness.outcome import Outcome
from harness.session import RunSession


def two_local_nodes() -> Inventory:
    nodes = {name: Node(name=name, role="host", os="linux", family="tcp", address="127.0.0.1",
                        access=Access(kind="local")) for name in ("here", "there")}
    return Inventory(name="local", path="<local>", nodes=nodes)


def cells() -> list[Cell]:
    return [Cell(scenario="W", server_on="here", bind="loopback", client_on="here", target="loopback", port=34901),
            Cell(scenario="W", server_on="there", bind="loopback", client_on="there", target="loopback", port=34902)]


def started_agents(session: RunSession) -> list[str]:
    return sorted(name for name, agent in session.pool._agents.items() if getattr(agent, "starts", 0))


def test_a_worker_starts_a_nodes_probe_at_its_first_cell_only():
    session = RunSession(two_local_nodes(), warm_up=False)
    try:
        session.start(cells())
        assert started_agents(session) == []
        assert session.run(cells()[0]).outcome is Outcome.O
        assert started_agents(session) == ["here"]
    finally:
        session.close()


def test_a_single_process_starts_every_nodes_probe_before_the_first_cell():
    session = RunSession(two_local_nodes())
    try:
        session.start(cells())
        assert started_agents(session) == ["here", "there"]
    finally:
        session.close()
