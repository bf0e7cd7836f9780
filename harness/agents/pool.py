"""AgentPool: one agent and one transport per node for the whole run -- the only transport cache.

A jump host's connection is the pool's transport of that node, shared by the tunnels through it;
close() ends every agent, then every transport (tunnelled ones first).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from harness.agents.base import DEFAULT_IDLE_TIMEOUT, MARGIN, ProbeAgent
from harness.agents.oneshot import OneShotAgent
from harness.agents.session import SessionAgent
from harness.errors import HarnessError, NodeError
from harness.node import Inventory, Node
from harness.transports import open_transport
from harness.transports.base import Transport


class AgentPool:
    """One agent per node for the whole run; close() ends every session and connection.

    mode: "session" (default; psexec nodes still get one-shot agents) or "oneshot" (every node).
    `transport_factory(node, inventory)` replaces how a transport is made (tests); by default
    harness.transports.open_transport, with this pool as the SSH jump hosts' source.
    """

    def __init__(self, inventory: Inventory, mode: str = "session",
                 transport_factory: Callable[[Node, Inventory], Transport] | None = None,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, margin: float = MARGIN):
        if mode not in ("session", "oneshot"):
            raise ValueError(f"agent mode {mode!r} (expected session or oneshot)")
        self.inventory = inventory
        self.mode = mode
        self.transport_factory = transport_factory
        self.idle_timeout = idle_timeout
        self.margin = margin
        self._agents: dict[str, ProbeAgent] = {}
        self._transports: dict[str, Transport] = {}
        self._lock = threading.RLock()

    def _open(self, node: Node) -> Transport:
        if self.transport_factory is not None:
            return self.transport_factory(node, self.inventory)
        return open_transport(node, self.inventory, jump_opener=self.transport_for)

    def transport_for(self, node: Node) -> Transport:
        """The pool's transport of `node` (an inventory node, or an ssh_config ProxyJump hop), made once;
        a closed one is replaced."""
        with self._lock:
            t = self._transports.get(node.name)
            if t is None or getattr(t, "_closed", False):
                t = self._open(node)
                self._transports[node.name] = t
            return t

    def transport(self, node_name: str) -> Transport:
        return self.transport_for(self.inventory.node(node_name))

    def agent(self, node_name: str) -> ProbeAgent:
        if node_name not in self.inventory.nodes:
            raise NodeError(node_name, "not in the inventory")
        with self._lock:
            agent = self._agents.get(node_name)
        if agent is not None:
            return agent
        node = self.inventory.node(node_name)
        transport = self.transport(node_name)
        if self.mode == "oneshot" or node.access.kind == "psexec":
            agent = OneShotAgent(node, transport, self.margin)
        else:
            agent = SessionAgent(node, transport, self.idle_timeout, self.margin)
        with self._lock:
            return self._agents.setdefault(node_name, agent)

    def facts(self, names) -> dict[str, dict]:
        """Every named node's `info`, asked in parallel ({"error": ...} for a node that failed).

        Started one by one, a lab's nested guests would each cost their ~2 min start (SSH ~55 s
        and a Python start) in turn; in parallel a run pays it once.
        """
        names = list(names)

        def info(name: str) -> tuple[str, dict]:
            try:
                return name, self.agent(name).info()
            except HarnessError as err:  # the node's cells say so themselves, as E
                return name, {"error": str(err)}

        if not names:
            return {}
        with ThreadPoolExecutor(len(names)) as ex:
            return dict(ex.map(info, names))

    def close(self) -> None:
        with self._lock:
            agents, self._agents = list(self._agents.values()), {}
            transports, self._transports = list(self._transports.values()), {}
        for agent in agents:
            with contextlib.suppress(Exception):  # closing never fails a run
                agent.close()
        # jumped nodes first, so a jump host's connection outlives the tunnels through it
        transports.sort(key=lambda t: t.node.access.jump is None)
        for t in transports:
            with contextlib.suppress(Exception):
                t.close()

    def __enter__(self) -> AgentPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
