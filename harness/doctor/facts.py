"""Gathering a node's facts for the doctor: the probe's own `info` (and, on a Windows host, its
`services list`), the same facts a run reads at its start -- nothing is derived a second way.

Safety: the controller itself (an `access: local` node that is not a lab node) is never asked
through the probe: its facts are read here without touching AF_VSOCK or the /dev/vsock ioctl.
"""
from __future__ import annotations

import os
import platform

from harness import timeouts
from harness.doctor.parse import parse_proc_modules
from harness.errors import NodeError
from harness.probe.facts import socat_version

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
    facts["socat_version"] = socat_version(timeout=timeouts.LOCAL_TOOL)
    return facts


def is_controller(node) -> bool:
    return node.access.kind == "local" and not node.lab_node


def linux_facts(node, pool) -> dict:
    if is_controller(node):
        return controller_facts()
    return pool.agent(node.name).info()


def windows_facts(node, pool) -> dict:
    """The probe's info (Python, AF_HYPERV, VM ID); on a host, the registered services it lists.

    `af_hyperv` is Winsock's own answer (socket(AF_HYPERV) works), not a reading of
    `netsh winsock show catalog`, whose labels a localised Windows translates.
    """
    from harness.hyperv.registration import list_registered

    agent = pool.agent(node.name)
    facts = dict(agent.info())
    if node.role == "host":
        try:
            facts["registered"] = [entry["guid"] for entry in list_registered(agent)]
            facts["gcs_root"] = True
        except NodeError as err:
            facts["registered"] = []
            facts["gcs_root"] = False
            facts["gcs_error"] = err.message
    return facts
