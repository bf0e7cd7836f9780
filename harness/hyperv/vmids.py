"""Hyper-V VM IDs: the address a host uses to reach a VM (`self`, `server`, `node:<name>` tokens).

Two views exist and both are read: the host's (`Get-VM` Name and Id) and the guest's own
(registry `HKLM:\\SOFTWARE\\Microsoft\\Virtual Machine\\Guest\\Parameters`, value VirtualMachineId,
present only with integration services on). An inventory that leaves vm_id out is filled from
them; when inventory, host and guest disagree the user gets one line per node.
"""
from __future__ import annotations

import dataclasses
import json

from harness.errors import NodeError
from harness.hyperv.clixml import first_error_line
from harness.addresses import canonical_guid
from harness.hyperv.powershell import output_lines, powershell_argv, ps_quote
from harness import timeouts

GUEST_PARAMETERS_KEY = r"HKLM:\SOFTWARE\Microsoft\Virtual Machine\Guest\Parameters"
SCRIPT_TIMEOUT = timeouts.VMIDS_SCRIPT

# Id as a string: Windows PowerShell 5.1 may serialise a [guid] as {"Guid": ...}; ToString() never does.
GET_VM_SCRIPT = (
    "$ErrorActionPreference = 'Stop'\n"
    "Get-VM | Select-Object Name,@{Name='Id';Expression={$_.Id.ToString()}} | ConvertTo-Json -Compress\n"
)

GUEST_VM_ID_SCRIPT = (
    "$ErrorActionPreference = 'Stop'\n"
    f"$p = Get-ItemProperty -LiteralPath {ps_quote(GUEST_PARAMETERS_KEY)} -Name 'VirtualMachineId' -ErrorAction SilentlyContinue\n"
    "if ($p) { Write-Output $p.VirtualMachineId } else { Write-Output 'none' }\n"
)


def hyperv_vm_name(node) -> str:
    """The VM's name in Hyper-V Manager: the node's `hyperv_vm_name` fact, else the node name."""
    return str((node.facts or {}).get("hyperv_vm_name") or node.name)


def _id_text(value) -> str | None:
    if isinstance(value, dict):  # {"Guid": "..."} from a raw [guid]
        value = value.get("Guid") or value.get("guid")
    return canonical_guid(str(value)) if value is not None else None


def parse_get_vm(stdout: str) -> dict[str, str]:
    """{VM name: lowercase VM ID} from ConvertTo-Json output: one object, a list, or nothing (no VMs)."""
    text = stdout.strip().lstrip("\ufeff")
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"Get-VM output is not JSON ({err.msg} at char {err.pos})") from None
    items = data if isinstance(data, list) else [data]
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or "Name" not in item:
            raise ValueError(f"Get-VM output has an entry without Name: {item!r}")
        vm_id = _id_text(item.get("Id"))
        if vm_id is None:
            raise ValueError(f"Get-VM entry {item.get('Name')!r} has no usable Id: {item.get('Id')!r}")
        out[str(item["Name"])] = vm_id
    return out


def parse_guest_vm_id(stdout: str) -> str | None:
    """The guest's own VM ID, or None when integration services are off (value missing)."""
    lines = output_lines(stdout)
    if not lines or lines[-1] == "none":
        return None
    return canonical_guid(lines[-1])


def host_vm_ids(transport) -> dict[str, str]:
    """Get-VM on a Hyper-V host: {VM name: VM ID}."""
    result = transport.run(powershell_argv(GET_VM_SCRIPT), timeout=SCRIPT_TIMEOUT)
    if result.rc != 0:
        raise NodeError(transport.node.name, f"Get-VM failed (rc {result.rc}): "
                                             f"{first_error_line(result.stderr, result.stdout)}")
    try:
        return parse_get_vm(result.stdout)
    except ValueError as err:
        raise NodeError(transport.node.name, str(err)) from None


def guest_vm_id(transport) -> str | None:
    """VirtualMachineId from inside a Windows guest (None: integration services off)."""
    result = transport.run(powershell_argv(GUEST_VM_ID_SCRIPT), timeout=SCRIPT_TIMEOUT)
    if result.rc != 0:
        raise NodeError(transport.node.name, f"reading VirtualMachineId failed (rc {result.rc}): "
                                             f"{first_error_line(result.stderr, result.stdout)}")
    return parse_guest_vm_id(result.stdout)


@dataclasses.dataclass
class VmIdViews:
    """What each side says, per VM node name: host view (via its parent's Get-VM) and guest view."""

    host: dict[str, str | None] = dataclasses.field(default_factory=dict)
    guest: dict[str, str | None] = dataclasses.field(default_factory=dict)


def host_view_for_nodes(inventory, host_name: str, get_vm: dict[str, str]) -> dict[str, str | None]:
    """Maps a host's Get-VM answer onto its child nodes (match on the Hyper-V VM name, case-insensitive)."""
    by_lower = {name.lower(): vm_id for name, vm_id in get_vm.items()}
    return {child.name: by_lower.get(hyperv_vm_name(child).lower()) for child in inventory.children(host_name)}


def mismatches(inventory, views: VmIdViews) -> list[str]:
    """One line per VM node whose inventory, host and guest views of its VM ID disagree."""
    lines = []
    for node in inventory.nodes.values():
        if node.role != "vm":
            continue
        seen = {
            "inventory": canonical_guid(node.vm_id) if node.vm_id else None,
            "host": views.host.get(node.name),
            "guest": views.guest.get(node.name),
        }
        known = {k: v for k, v in seen.items() if v}
        if len(set(known.values())) > 1:
            said = ", ".join(f"{k} {v}" for k, v in known.items())
            lines.append(f"node {node.name}: VM ID mismatch: {said}")
    return lines


def fill_vm_ids(inventory, views: VmIdViews):
    """A copy of the inventory where VM nodes without vm_id take the host's view, else the guest's."""
    nodes = {}
    for name, node in inventory.nodes.items():
        if node.role == "vm" and not node.vm_id:
            found = views.host.get(name) or views.guest.get(name)
            if found:
                node = dataclasses.replace(node, vm_id=found)
        nodes[name] = node
    return dataclasses.replace(inventory, nodes=nodes)


def gather_views(inventory, transport_for) -> tuple[VmIdViews, dict[str, str]]:
    """Asks every Windows host (Get-VM) and every Windows VM (registry); returns views and per-node errors."""
    views = VmIdViews()
    errors: dict[str, str] = {}
    for node in inventory.nodes.values():
        if node.os != "windows":
            continue
        try:
            if node.role == "host":
                views.host.update(host_view_for_nodes(inventory, node.name, host_vm_ids(transport_for(node))))
            else:
                views.guest[node.name] = guest_vm_id(transport_for(node))
        except NodeError as err:
            errors[node.name] = err.message
    return views, errors
