"""Doctor checks: pure functions from a node's facts to rows (what, needed for, state, detail, fix).

Facts are plain dicts (the probe's `info` answer, and on a Windows host its `services list`), so
every check is testable against sample facts without a lab.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness import addresses
from harness.doctor.parse import parse_version

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"
VMADDR_CID_ANY = addresses.VMADDR_CID_ANY
MIN_PYTHON = (3, 8)
MIN_PYTHON_WINDOWS = (3, 12)  # socket.AF_HYPERV is native from 3.12; the probe refuses older (probe/sockets.py)
MIN_SOCAT = (1, 7, 4)


@dataclass(frozen=True)
class Check:
    what: str
    needed_for: str
    state: str  # ok | FAIL | warn | skip
    detail: str = ""
    fix: str = ""


def unreachable(message: str, access_kind: str) -> Check:
    return Check("node reachable", "every cell on this node", FAIL, message,
                 f"check the node's access ({access_kind}) in the inventory; try it by hand")


def python_check(version: str | None, where: str) -> Check:
    found = parse_version(version)
    if found is None:
        fix = ("install Python >= 3.12 (python.org or `winget install Python.Python.3.12`); the `py` launcher "
               "must be on PATH, or set access.python" if where == "windows"
               else "install python3 (>= 3.8), or set access.python")
        return Check("Python for the probe", "every probe cell", FAIL, "not found", fix)
    text = ".".join(map(str, found))
    if where == "windows" and found[:2] < MIN_PYTHON_WINDOWS:
        return Check("Python for the probe", "every probe cell", FAIL,
                     f"{text} has no socket.AF_HYPERV (the probe refuses it)",
                     "install Python >= 3.12 (`winget install Python.Python.3.12`) and make `py -3` pick it, "
                     "or set access.python to its python.exe")
    if found[:2] < MIN_PYTHON:
        return Check("Python for the probe", "every probe cell", FAIL, text, "the probe needs Python >= 3.8")
    return Check("Python for the probe", "every probe cell", OK, text)


# --- Linux ---------------------------------------------------------------------------------------

def _module(name: str, modules: set[str], needed_for: str, required: bool, fix: str) -> Check:
    if name in modules:
        return Check(f"module {name}", needed_for, OK, "loaded")
    if not required:
        return Check(f"module {name}", needed_for, SKIP, "not loaded; not needed on this node")
    return Check(f"module {name}", needed_for, FAIL, "not loaded",
                 f"{fix} (or check it is built in: grep {name} /lib/modules/$(uname -r)/modules.builtin)")


def linux_checks(facts: dict, role: str, parent_os: str | None, has_linux_children: bool = False,
                 inventory_cid: int | None = None, lab_node: bool = False, needs_socat: bool = False) -> list[Check]:
    """Rows for a Linux node from the probe's info facts (vsock_modules, dev_vsock, local_cid, ...)."""
    rows = [python_check(facts.get("python"), "linux")]
    modules = set(facts.get("vsock_modules") or [])
    dev = bool(facts.get("dev_vsock"))
    on_kvm = role == "vm" and parent_os == "linux"
    on_hyperv = role == "vm" and parent_os == "windows"
    if "vsock" in modules or dev:
        rows.append(Check("module vsock", "every vsock cell", OK, "loaded" if "vsock" in modules else "built in (/dev/vsock)"))
    else:
        rows.append(_module("vsock", modules, "every vsock cell", True, "modprobe vsock"))
    rows.append(_module("vsock_loopback", modules, "loopback cells (VMADDR_CID_LOCAL 1)", True,
                        "modprobe vsock_loopback"))
    rows.append(_module("vmw_vsock_virtio_transport", modules, "a KVM/qemu guest reaching its host (CID 2)",
                        on_kvm, "modprobe vmw_vsock_virtio_transport; start qemu with -device vhost-vsock-pci,guest-cid=N"))
    rows.append(_module("hv_sock", modules, "a Linux VM on Hyper-V reaching its host (matrix B)", on_hyperv,
                        "modprobe hv_sock (linux-azure / linux-image-extra-virtual kernels have it)"))
    if role == "host" and has_linux_children:
        rows.append(_module("vhost_vsock", modules, "qemu guests with vhost-vsock-pci", True, "modprobe vhost_vsock"))
    if dev:
        rows.append(Check("/dev/vsock", "every vsock cell", OK, "present"))
    else:
        rows.append(Check("/dev/vsock", "every vsock cell", FAIL, "missing",
                          "load the vsock modules above; a VM also needs its transport (virtio or hv_sock)"))
    rows.append(_cid_check(facts, role, on_kvm, inventory_cid, lab_node))
    rows.append(_socat_check(facts.get("socat_version"), needs_socat))
    return rows


def _cid_check(facts: dict, role: str, on_kvm: bool, inventory_cid: int | None, lab_node: bool) -> Check:
    what, needed = "local CID", "cells that address this node by CID (self, server, node:)"
    cid = facts.get("local_cid")
    if cid is None:
        if not lab_node or facts.get("refused"):
            return Check(what, needed, SKIP, "not read: not a lab node (the probe refuses the /dev/vsock ioctl)")
        if not facts.get("dev_vsock"):
            return Check(what, needed, SKIP, "no /dev/vsock")
        return Check(what, needed, FAIL, f"ioctl failed: {facts.get('local_cid_error', 'unknown')}",
                     "check /dev/vsock permissions (the probe runs as this user)")
    if cid == VMADDR_CID_ANY:
        if on_kvm:
            return Check(what, needed, FAIL, "4294967295 (none assigned)",
                         "start the guest with -device vhost-vsock-pci,guest-cid=N (N >= 3)")
        return Check(what, needed, OK, "4294967295 (none assigned; normal on a host or under Hyper-V)")
    if inventory_cid is not None and inventory_cid != cid:
        return Check(what, needed, FAIL, f"{cid}, inventory says {inventory_cid}", f"set cid: {cid} in the inventory")
    return Check(what, needed, OK, str(cid))


def _socat_check(version: str | None, needs_socat: bool) -> Check:
    what, needed = "socat >= 1.7.4", "the socat driver (VSOCK-LISTEN / VSOCK-CONNECT)"
    bad = WARN if not needs_socat else FAIL
    found = parse_version(version)
    fix = "install socat >= 1.7.4 (Debian 12, Ubuntu 22.04+; 20.04's 1.7.3.3 has no VSOCK)"
    if found is None:
        return Check(what, needed, bad, "not installed", fix)
    text = ".".join(map(str, found))
    if found < MIN_SOCAT:
        return Check(what, needed, bad, f"{text} has no VSOCK address types", fix)
    return Check(what, needed, OK, text)


# --- Windows -------------------------------------------------------------------------------------

def windows_checks(facts: dict, role: str, inventory_vm_id: str | None = None,
                   run_guids: set[str] | None = None) -> list[Check]:
    """Rows for a Windows node from its probe facts: python, af_hyperv, vm_id; a host's gcs_root, registered."""
    rows = [python_check(facts.get("python"), "windows")]
    if facts.get("af_hyperv"):
        rows.append(Check('Winsock provider "Hyper-V RAW"', "every hyperv cell (AF_HYPERV 34)", OK,
                          "socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW) works"))
    else:
        rows.append(Check('Winsock provider "Hyper-V RAW"', "every hyperv cell (AF_HYPERV 34)", FAIL,
                          facts.get("python_problem") or "socket(AF_HYPERV) fails: no provider for address family 34",
                          "enable Hyper-V (host) or the Hyper-V integration services (VM); Windows 10 1709+ / "
                          "Server 2016+"))
    if role == "vm":
        rows.append(_integration_check(facts.get("vm_id"), inventory_vm_id))
    else:
        rows += _host_checks(facts, run_guids)
    return rows


def _integration_check(vm_id: str | None, inventory_vm_id: str | None) -> Check:
    what, needed = "integration services (VirtualMachineId)", "the host reaching this VM by its VM ID"
    if not vm_id:
        return Check(what, needed, FAIL, "no VirtualMachineId under HKLM\\SOFTWARE\\Microsoft\\Virtual Machine\\Guest\\Parameters",
                     "on the host: Enable-VMIntegrationService -VMName <vm> -Name 'Key-Value Pair Exchange'")
    vm_id = vm_id.strip("{}").lower()
    if inventory_vm_id and inventory_vm_id.lower() != vm_id:
        return Check(what, needed, FAIL, f"VM says {vm_id}, inventory says {inventory_vm_id}",
                     f"set vm_id: {vm_id} in the inventory (or remove it to fill it from the host)")
    return Check(what, needed, OK, vm_id)


def _host_checks(facts: dict, run_guids: set[str] | None) -> list[Check]:
    rows = []
    if not facts.get("gcs_root"):
        rows.append(Check("Hyper-V role", "every VM <-> host cell", FAIL, "no GuestCommunicationServices key",
                          "Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V -All (reboot)"))
        return rows
    rows.append(Check("Hyper-V role", "every VM <-> host cell", OK, "GuestCommunicationServices key present"))
    registered = {str(g).strip("{}").lower() for g in (facts.get("registered") or [])}
    what, needed = "service GUIDs registered", "VM <-> host cells (matrix A, B)"
    if not run_guids:
        rows.append(Check(what, needed, SKIP, f"{len(registered)} registered; no run given "
                                              "(--scenario / --ports to check a run's GUIDs)"))
        return rows
    missing = sorted(set(run_guids) - registered)
    if missing:
        rows.append(Check(what, needed, WARN, f"{len(missing)} of {len(run_guids)} missing, e.g. {missing[0]}",
                          "a run registers them itself (admin needed); or: hvsock-matrix register --inventory F "
                          "--scenario S"))
    else:
        rows.append(Check(what, needed, OK, f"all {len(run_guids)} registered"))
    return rows
