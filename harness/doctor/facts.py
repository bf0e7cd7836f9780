"""Gathering a node's facts for the doctor: through the probe agents and, on Windows, PowerShell.

Safety: the controller itself (an `access: local` node that is not a lab node) is never asked
through the probe: its facts are read here without touching AF_VSOCK or the /dev/vsock ioctl.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess

from harness.doctor.parse import parse_proc_modules
from harness.errors import NodeError
from harness.hyperv.clixml import first_error_line
from harness.hyperv.powershell import powershell_argv, ps_quote
from harness.hyperv.registration import GCS_ROOT
from harness.hyperv.vmids import GUEST_PARAMETERS_KEY
from harness import timeouts

WINDOWS_FACTS_SCRIPT = "\n".join([
    "$ErrorActionPreference = 'Continue'",
    f"$root = {ps_quote(GCS_ROOT)}",
    "$f = [ordered]@{}",
    f"$p = Get-ItemProperty -LiteralPath {ps_quote(GUEST_PARAMETERS_KEY)} -Name 'VirtualMachineId' -ErrorAction SilentlyContinue",
    "if ($p) { $f.vm_id = [string]$p.VirtualMachineId } else { $f.vm_id = $null }",
    "$f.gcs_root = [bool](Test-Path -LiteralPath $root)",
    "if ($f.gcs_root) { $f.registered = @(Get-ChildItem -LiteralPath $root | ForEach-Object { $_.PSChildName }) } else { $f.registered = @() }",
    "$f.hyperv_role = [bool](Get-Command Get-VM -ErrorAction SilentlyContinue)",
    "$f.winsock_catalog = (netsh winsock show catalog | Out-String)",
    "$f.build = [System.Environment]::OSVersion.Version.ToString()",
    "ConvertTo-Json -InputObject $f -Compress",
]) + "\n"

VSOCK_MODULE_NAMES = ("hv_sock", "vmw_vmci")


def controller_facts() -> dict:
    """This machine's facts without the probe: /proc/modules, a stat of /dev/vsock, socat -V."""
    facts: dict = {"python": platform.python_version(), "os": "linux", "kernel": platform.release(),
                   "dev_vsock": os.path.exists("/dev/vsock"), "local_cid": None, "socat_version": None,
                   "refused": ["/dev/vsock ioctl: the controller is not a lab node"]}
    try:
        with open("/proc/modules") as handle:
            names = parse_proc_modules(handle.read())
        facts["vsock_modules"] = sorted(n for n in names if "vsock" in n or n in VSOCK_MODULE_NAMES)
    except OSError:
        facts["vsock_modules"] = []
    try:
        out = subprocess.run(["socat", "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeouts.LOCAL_TOOL)
        for line in out.stdout.decode("utf-8", "replace").splitlines():
            if "socat version" in line:
                facts["socat_version"] = line.split("socat version", 1)[1].split()[0]
                break
    except (OSError, subprocess.SubprocessError):
        pass
    return facts


def is_controller(node) -> bool:
    return node.access.kind == "local" and not node.lab_node


def linux_facts(node, pool) -> dict:
    if is_controller(node):
        return controller_facts()
    return pool.agent(node.name).info()


def windows_facts(node, pool) -> dict:
    """The probe's info (Python, VM ID) merged with PowerShell's (registry, Winsock catalog)."""
    facts: dict = {}
    try:
        info = pool.agent(node.name).info()
        facts["python"] = info.get("python")
        facts["probe_vm_id"] = info.get("vm_id")
    except NodeError as err:
        facts["python"] = None
        facts["probe_error"] = err.message
    result = pool.transport(node.name).run(powershell_argv(WINDOWS_FACTS_SCRIPT), timeout=timeouts.WINDOWS_FACTS_SCRIPT)
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise NodeError(node.name, f"facts script failed (rc {result.rc}): "
                                   f"{first_error_line(result.stderr, result.stdout)}")
    try:
        facts.update(json.loads(lines[-1]))
    except json.JSONDecodeError as err:
        raise NodeError(node.name, f"facts script printed bad JSON: {err.msg}") from None
    if isinstance(facts.get("registered"), str):  # one entry: PowerShell may print it bare
        facts["registered"] = [facts["registered"]]
    return facts
