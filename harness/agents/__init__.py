"""Probe agents: the controller's handle on the probe running on each node.

    base.py     ProbeAgent (the contract both agents keep), request tracing, margins
    session.py  SessionAgent: one resident `probe.pyz session` per node, requests multiplexed by id
    oneshot.py  OneShotAgent: `probe.pyz serve` / `connect` processes (psexec, or mode="oneshot")
    pool.py     AgentPool: one agent and one transport per node for a run (the only transport cache)
"""
from harness.agents.base import DEFAULT_IDLE_TIMEOUT, MARGIN, ProbeAgent
from harness.agents.oneshot import OneShotAgent
from harness.agents.pool import AgentPool
from harness.agents.session import SessionAgent

__all__ = ["DEFAULT_IDLE_TIMEOUT", "MARGIN", "AgentPool", "OneShotAgent", "ProbeAgent", "SessionAgent"]
