"""Hyper-V VM IDs: the address a host uses to reach a VM (`self`, `server`, `node:<name>` tokens).

Where a VM ID comes from, in this order (an inventory `vm_id` always wins):

1. the VM itself, in its probe's facts (`info`, read once per run at session start):
   - a Windows VM: HKLM\\SOFTWARE\\Microsoft\\Virtual Machine\\Guest\\Parameters, VirtualMachineId
     (64-bit registry view), written by the integration services (probe/facts.py windows_vm_id);
   - a Linux VM on Hyper-V: hv_kvp_daemon's pool 3 (/var/lib/hyperv/.kvp_pool_3, which Microsoft's
     "Data Exchange: Using key-value pairs" maps to Guest\\Parameter) when it holds VirtualMachineId
     (probe/facts.py kvp_vm_id; torvalds/linux tools/hv/hv_kvp_daemon.c for the file layout);
2. else the VM's Hyper-V host: `Get-VM` Name and Id (PowerShell; the only script left on Windows).

When the inventory, the VM and the host disagree, `mismatches` names every side (doctor's FAIL row).
"""
from __future__ import annotations

import dataclasses
import json

from harness import timeouts
from harness.addresses import canonical_guid
from harness.errors import NodeError
from harness.hyperv.powershell import powershell_argv

SCRIPT_TIMEOUT = timeouts.VMIDS_SCRIPT

# UTF-8 out, and every non-ASCII character written as a JSON \uXXXX escape: PAExec gives the script a new
# console whose code page is the OEM one (949 on a Korean Windows), which a UTF-8 reader would mangle; an
# ASCII-only answer reads the same in every code page. Errors come back as JSON too (no CLIXML to parse).
GET_VM_SCRIPT = (
    "$ErrorActionPreference = 'Stop'\n"
    "[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false\n"
    "function Out-Ascii($text) { [regex]::Replace($text, '[^\\x00-\\x7F]', "
    "{ param($m) '\\u{0:x4}' -f [int][char]$m.Value }) }\n"
    "try {\n"
    "  $vms = @(Get-VM | ForEach-Object { @{ Name = [string]$_.Name; Id = $_.Id.ToString() } })\n"
    "  Write-Output (Out-Ascii (ConvertTo-Json -InputObject @{ vms = $vms } -Compress -Depth 3))\n"
    "} catch {\n"
    "  Write-Output (Out-Ascii (ConvertTo-Json -InputObject @{ error = [string]$_.Exception.Message } -Compress))\n"
    "  exit 1\n"
    "}\n"
)


def hyperv_vm_name(node) -> str:
    """The VM's name in Hyper-V Manager: the node's `hyperv_vm_name` fact, else the node name."""
    return str((node.facts or {}).get("hyperv_vm_name") or node.name)


def parse_get_vm(stdout: str) -> dict[str, str]:
    """{VM name: lowercase VM ID} from GET_VM_SCRIPT's one JSON line; ValueError names what is wrong."""
    lines = [line for line in stdout.replace("\r\n", "\n").split("\n") if line.strip().startswith("{")]
    if not lines:
        raise ValueError(f"Get-VM printed no JSON: {stdout.strip()[:200]!r}")
    try:
        data = json.loads(lines[-1].lstrip("\ufeff"))
    except json.JSONDecodeError as err:
        raise ValueError(f"Get-VM output is not JSON ({err.msg} at char {err.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("Get-VM output is not a JSON object")
    if data.get("error"):
        raise ValueError(f"Get-VM failed: {data['error']}")
    items = data.get("vms") or []
    items = items if isinstance(items, list) else [items]  # PowerShell 5.1 may unwrap a one-element array
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or "Name" not in item:
            raise ValueError(f"Get-VM output has an entry without Name: {item!r}")
        vm_id = canonical_guid(str(item.get("Id")))
        if vm_id is None:
            raise ValueError(f"Get-VM entry {item.get('Name')!r} has no usable Id: {item.get('Id')!r}")
        out[str(item["Name"])] = vm_id
    return out


def host_vm_ids(transport) -> dict[str, str]:
    """Get-VM on a Hyper-V host: {VM name: VM ID}."""
    result = transport.run(powershell_argv(GET_VM_SCRIPT), timeout=SCRIPT_TIMEOUT)
    try:
        return parse_get_vm(result.stdout)
    except ValueError as err:
        raise NodeError(transport.node.name, f"{err} (rc {result.rc})") from None


@dataclasses.dataclass
class VmIdViews:
    """What each side says, per VM node name: the host's Get-VM and the VM's own facts."""

    host: dict[str, str | None] = dataclasses.field(default_factory=dict)
    guest: dict[str, str | None] = dataclasses.field(default_factory=dict)


def host_view_for_nodes(inventory, host_name: str, get_vm: dict[str, str]) -> dict[str, str | None]:
    """Maps a host's Get-VM answer onto its child nodes (match on the Hyper-V VM name, case-insensitive)."""
    by_lower = {name.lower(): vm_id for name, vm_id in get_vm.items()}
    return {child.name: by_lower.get(hyperv_vm_name(child).lower()) for child in inventory.children(host_name)}


def guest_view(inventory, facts: dict[str, dict]) -> dict[str, str | None]:
    """{VM node: the VM ID its own probe reported} from the nodes' `info` facts."""
    out: dict[str, str | None] = {}
    for name, node_facts in facts.items():
        node = inventory.nodes.get(name)
        if node is None or node.role != "vm" or not isinstance(node_facts, dict) or "error" in node_facts:
            continue
        out[name] = canonical_guid(str(node_facts.get("vm_id"))) if node_facts.get("vm_id") else None
    return out


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
    """A copy of the inventory where VM nodes without vm_id take the VM's own view, else the host's."""
    nodes = {}
    for name, node in inventory.nodes.items():
        if node.role == "vm" and not node.vm_id:
            found = views.guest.get(name) or views.host.get(name)
            if found:
                node = dataclasses.replace(node, vm_id=found)
        nodes[name] = node
    return dataclasses.replace(inventory, nodes=nodes)


def gather_views(inventory, facts: dict[str, dict], transport_for, only: list[str] | None = None
                 ) -> tuple[VmIdViews, dict[str, str]]:
    """The VMs' own views from their facts; the host's Get-VM for VM nodes in `only` (default: all)
    that neither the inventory nor the VM itself answered. Returns the views and per-host errors."""
    views = VmIdViews(guest=guest_view(inventory, facts))
    errors: dict[str, str] = {}
    wanted = [n for n in inventory.nodes.values() if n.role == "vm" and (only is None or n.name in only)
              and not n.vm_id and not views.guest.get(n.name)]
    hosts = sorted({n.parent for n in wanted if n.parent in inventory.nodes
                    and inventory.nodes[n.parent].os == "windows" and inventory.nodes[n.parent].role == "host"})
    for host in hosts:
        try:
            views.host.update(host_view_for_nodes(inventory, host, host_vm_ids(transport_for(inventory.nodes[host]))))
        except NodeError as err:
            errors[host] = err.message
    return views, errors
