"""Probe traffic in the log: one logger tree, DEBUG, scrubbed like every text leaving a cell."""
from __future__ import annotations

import logging

from harness import secrets
from harness.agents import base as agents


def test_probe_traffic_is_logged_at_debug_under_one_logger_and_scrubbed(caplog):
    secrets.register("pw-9f3e1c-never-logged")  # as a password_env value is when an inventory loads
    caplog.set_level(logging.DEBUG, logger="hvsock_matrix")
    agents._trace("hv-host", "->", '{"id": 1, "op": "info", "note": "pw-9f3e1c-never-logged"}')
    agents._trace("hv-host", "<-", '{"event": "info", "id": 1}')
    assert [(r.name, r.levelno) for r in caplog.records] == [("hvsock_matrix.probe", logging.DEBUG)] * 2
    assert caplog.messages[0].startswith("hv-host -> {") and "pw-9f3e1c" not in caplog.text
    assert caplog.messages[1] == 'hv-host <- {"event": "info", "id": 1}'


def test_nothing_is_formatted_when_debug_is_off(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="hvsock_matrix")
    monkeypatch.setattr(agents, "scrub", lambda text: (_ for _ in ()).throw(AssertionError("scrubbed anyway")))
    agents._trace("n", "->", "{}")
    assert caplog.records == []
