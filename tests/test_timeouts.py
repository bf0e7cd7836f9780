"""harness/timeouts.py is the one place a controller time budget lives, and the agents use it."""
from __future__ import annotations

import ast
from pathlib import Path

from harness import timeouts
from harness.agents import SessionAgent
from harness.node import Access, Node

HARNESS = Path(__file__).resolve().parents[1] / "harness"
WAITING_CALLS = {"wait", "read_line", "join", "settimeout"}  # budgets; poll intervals (sleep) are not
EXEMPT = ("probe/", "lab/", "timeouts.py")  # the probe is stdlib-only (shipped to nodes); the lab's boot steps are its own


def timeout_literals() -> list[str]:
    """`timeout=<number>` and `.wait(<number>)`-like calls with a number, outside the exempt files."""
    found = []
    for path in HARNESS.rglob("*.py"):
        rel = path.relative_to(HARNESS).as_posix()
        if rel.startswith(EXEMPT):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            numbers = [kw.arg for kw in node.keywords
                       if kw.arg and "timeout" in kw.arg and isinstance(kw.value, ast.Constant)
                       and isinstance(kw.value.value, (int, float)) and kw.value.value not in (0, None)]
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name in WAITING_CALLS and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, (int, float)) and node.args[0].value != 0:
                numbers.append(name)
            found += [f"{rel}:{node.lineno}: {n}" for n in numbers]
    return found


def test_no_timeout_literal_outside_the_timeouts_module():
    assert timeout_literals() == []


def test_a_cells_budget_adds_up_from_its_parts():
    budget = timeouts.cell_budget(cell_timeout=10, server_connect_timeout=300, client_connect_timeout=30)
    assert budget["connect answer"] == 10 + 10 + timeouts.MARGIN
    assert budget["server: node connection and probe session start (once per run)"] == 300 + 2 * 300 + timeouts.SESSION_START
    assert budget["total"] == sum(v for k, v in budget.items() if k != "total")


def test_session_agent_waits_what_the_module_says():
    node = Node(name="n", role="host", os="linux", family="tcp", access=Access(connect_timeout=42.0))
    agent = SessionAgent(node, transport=None)
    waits = {}
    agent.request = lambda op, wait, **fields: waits.setdefault(op, wait) and {}
    agent.listen("tcp", "127.0.0.1", 1, None, timeout=7)
    agent.connect("tcp", "127.0.0.1", 1, None, "x", timeout=7, connect_timeout=3)
    agent.stop("L1")
    agent.info()
    assert waits == {"listen": timeouts.listen_answer(), "connect": timeouts.connect_answer(7, 3),
                     "stop": timeouts.stop_answer(), "info": timeouts.info_answer()}
    assert timeouts.connect_answer(7, 3) == 7 + 3 + timeouts.MARGIN
