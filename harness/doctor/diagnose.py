"""The doctor's run over an inventory: facts per node -> rows, plus the host's view of VM IDs."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from harness.doctor import checks
from harness.doctor.checks import Check
from harness.doctor.facts import linux_facts, windows_facts
from harness.errors import NodeError
from harness.hyperv import vmids


def _parent_os(inventory, node) -> str | None:
    parent = inventory.nodes.get(node.parent) if node.parent else None
    return parent.os if parent is not None else None


def node_rows(inventory, node, pool, run_guids: set[str] | None = None, needs_socat: bool = False) -> list[Check]:
    try:
        if node.os == "windows":
            return checks.windows_checks(windows_facts(node, pool), node.role, node.vm_id, run_guids)
        facts = linux_facts(node, pool)
        children = any(c.os == "linux" for c in inventory.children(node.name))
        return checks.linux_checks(facts, node.role, _parent_os(inventory, node), children, node.cid,
                                   node.lab_node, needs_socat)
    except NodeError as err:
        return [checks.unreachable(err.message, node.access.kind)]


def host_view_rows(inventory, pool) -> dict[str, list[Check]]:
    """Per VM node under a Windows host: does the host's Get-VM agree with the inventory's vm_id?"""
    rows: dict[str, list[Check]] = {}
    what, needed = "VM ID as the host sees it", "host -> VM cells (target server / node:)"
    for host in inventory.nodes.values():
        if host.os != "windows" or host.role != "host" or not inventory.children(host.name):
            continue
        try:
            view = vmids.host_view_for_nodes(inventory, host.name, vmids.host_vm_ids(pool.transport(host.name)))
        except NodeError as err:
            for child in inventory.children(host.name):
                rows.setdefault(child.name, []).append(Check(what, needed, checks.WARN, f"Get-VM on {host.name}: {err.message}"))
            continue
        for child in inventory.children(host.name):
            seen = view.get(child.name)
            name = vmids.hyperv_vm_name(child)
            if seen is None:
                row = Check(what, needed, checks.WARN, f"{host.name} has no VM named {name!r}",
                            "name the node after the VM, or set facts: {hyperv_vm_name: <name>} in the inventory")
            elif child.vm_id is None:
                row = Check(what, needed, checks.WARN, f"inventory has none; {host.name} says {seen}",
                            f"set vm_id: {seen} (runs fill it in from the host)")
            elif child.vm_id.lower() != seen:
                row = Check(what, needed, checks.FAIL, f"inventory {child.vm_id}, {host.name} says {seen}",
                            f"set vm_id: {seen} in the inventory")
            else:
                row = Check(what, needed, checks.OK, seen)
            rows.setdefault(child.name, []).append(row)
    return rows


def diagnose(inventory, pool, run_guids: set[str] | None = None, needs_socat: bool = False,
             only: list[str] | None = None) -> dict[str, list[Check]]:
    """{node name: rows}, in inventory order."""
    names = [n for n in inventory.nodes if not only or n in only]
    # nodes in parallel: each answers in seconds, a nested lab guest in minutes (a process start
    # there costs 10-50 s); the rows stay in inventory order
    with ThreadPoolExecutor(max(1, len(names))) as ex:
        rows = list(ex.map(lambda name: node_rows(inventory, inventory.nodes[name], pool, run_guids, needs_socat),
                           names))
    out = dict(zip(names, rows, strict=False))
    for name, host_rows in host_view_rows(inventory, pool).items():
        if name in out:
            out[name].extend(host_rows)
    return out
