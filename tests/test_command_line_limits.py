"""Command lines a Windows node receives stay within its limit.

Windows OpenSSH runs a command as `cmd.exe /c <command>` (cmd.exe: 8,191 characters at most);
PAExec starts it with CreateProcess (32,767 including the NUL).
"""
from __future__ import annotations

import subprocess

from harness.hyperv import registration
from harness.node import Access, Node
from harness.transports.base import CMD_EXE_LIMIT
from harness.transports.psexec import CREATE_PROCESS_LIMIT
from harness.transports.ssh import SSHTransport
from tests.fakes.fake_windows import FAKE_HOST, FakeHyperVLab, fake_lab_machines

SCATTERED = {f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(1500)}  # no port ranges to compress


def host_node(kind="ssh") -> Node:
    return Node("hv-host", "host", "windows", "hyperv", Access(kind=kind, host=FAKE_HOST), source="t:1")


def test_thousands_of_scattered_guids_are_registered_in_command_lines_that_fit(monkeypatch):
    """The one-shot agent (psexec) splits a `probe services` selection only where the node's command line
    limit demands it (CreateProcess: 32,767); a run's template GUIDs are a few port ranges."""
    from harness.agents import AgentPool
    from harness.transports import psexec
    from harness.transports.psexec import clients as psexec_clients
    from tests.fakes.fake_windows import FAKE_PASSWORD_ENV, fake_lab_inventory

    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    lab = FakeHyperVLab(fake_lab_machines())
    monkeypatch.setattr(psexec_clients, "client_factory", lab.client)
    monkeypatch.setattr(psexec_clients, "files_factory", lab.share.session)
    inventory = fake_lab_inventory()
    try:
        with AgentPool(inventory) as pool:
            report = registration.register_guids(pool.agent("hv-host"), SCATTERED)
            assert sorted(report.added) == sorted(SCATTERED)
            removed = registration.unregister_guids(pool.agent("hv-host"), SCATTERED)["removed"]
        assert sorted(removed) == sorted(SCATTERED) and lab.machine(FAKE_HOST).gcs == {}
        lines = [subprocess.list2cmdline(argv) for _, argv in lab.commands if "services" in argv]
        assert len(lines) > 2 and max(len(line) for line in lines) <= CREATE_PROCESS_LIMIT
    finally:
        psexec.shared_clients().clear()


def test_linux_nodes_have_no_command_line_limit():
    node = Node("l", "host", "linux", "vsock", Access(kind="ssh", host="l.invalid"), source="t:1")
    assert SSHTransport(node).command_line_limit() is None
    windows = Node("w", "host", "windows", "hyperv", Access(kind="ssh", host="w.invalid"), source="t:1")
    assert SSHTransport(windows).command_line_limit() == CMD_EXE_LIMIT - len("cmd.exe /c ")
