"""The doctor's output: one rich table per node (check, needed for, state, detail, fix)."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.doctor.checks import FAIL, OK, SKIP, WARN, Check

STYLES = {OK: "green", FAIL: "bold red", WARN: "yellow", SKIP: "dim"}


def node_table(inventory, name: str, rows: list[Check]) -> Table:
    node = inventory.nodes[name]
    title = f"{name}  ({node.os} {node.role}, {node.access.kind}{', lab node' if node.lab_node else ''})"
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    for column in ("check", "needed for", "state", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = STYLES.get(row.state, "")
        table.add_row(row.what, row.needed_for, f"[{style}]{row.state}[/]" if style else row.state,
                      row.detail, row.fix)
    return table


def render(inventory, results: dict[str, list[Check]], console: Console | None = None) -> int:
    """Prints every node's table and a summary line; returns 1 when any row FAILed, else 0."""
    console = console or Console()
    failed = 0
    for name, rows in results.items():
        console.print(node_table(inventory, name, rows))
        failed += sum(1 for r in rows if r.state == FAIL)
    warned = sum(1 for rows in results.values() for r in rows if r.state == WARN)
    console.print(f"doctor: {len(results)} node(s), {failed} failing check(s), {warned} warning(s)")
    return 1 if failed else 0
