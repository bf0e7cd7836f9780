"""Registration scripts are chunked by the transport's command-line limit, and reassemble exactly.

Windows OpenSSH runs a command as `cmd.exe /c <command>` (cmd.exe: 8,191 characters at most);
PAExec starts it with CreateProcess (32,767 including the NUL). The fake below is cmd.exe's side of
an OpenSSH session: a longer line fails as cmd.exe fails ("The command line is too long.", exit 1);
a line that fits reaches the FakeHyperVLab host, which runs the decoded PowerShell.
"""
from __future__ import annotations

import subprocess

from harness.hyperv import registration
from harness.hyperv.powershell import decode_command
from harness.node import Access, Node
from harness.transports.base import CMD_EXE_LIMIT, CommandResult, Transport
from harness.transports.psexec import CREATE_PROCESS_LIMIT, PsexecTransport
from tests.fakes.fake_windows import FAKE_HOST, FakeHyperVLab, fake_lab_machines

SCATTERED = {f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(1500)}  # no port ranges to compress


class FakeOpenSshToWindows(Transport):
    """The run() side of Windows OpenSSH: the command line goes through cmd.exe /c."""

    def __init__(self, node, lab: FakeHyperVLab):
        super().__init__(node)
        self.lab = lab
        self.lines: list[str] = []

    def run(self, argv, timeout, stdin=None):
        line = "cmd.exe /c " + subprocess.list2cmdline(argv)
        self.lines.append(line)
        if len(line) > CMD_EXE_LIMIT:
            return CommandResult(rc=1, stdout="", stderr="The command line is too long.\r\n")
        script = decode_command(argv[argv.index("-EncodedCommand") + 1])
        out, err, rc = self.lab._powershell(self.lab.machine(FAKE_HOST), script, False)
        return CommandResult(rc=rc, stdout=out.decode(), stderr=err.decode())

    def spawn(self, argv):
        raise NotImplementedError

    def put(self, local_path, remote_path):
        raise NotImplementedError

    def close(self):
        pass


def host_node(kind="ssh") -> Node:
    return Node("hv-host", "host", "windows", "hyperv", Access(kind=kind, host=FAKE_HOST), source="t:1")


def test_registration_over_openssh_fits_cmd_exe_and_reassembles():
    lab = FakeHyperVLab(fake_lab_machines())
    transport = FakeOpenSshToWindows(host_node(), lab)
    report = registration.register_guids(transport, SCATTERED)
    assert sorted(report.added) == sorted(SCATTERED)
    assert len(transport.lines) > 1
    assert max(len(line) for line in transport.lines) <= CMD_EXE_LIMIT
    assert set(lab.machine(FAKE_HOST).gcs) == SCATTERED
    removed = registration.unregister_guids(transport, SCATTERED)["removed"]
    assert sorted(removed) == sorted(SCATTERED) and not lab.machine(FAKE_HOST).gcs
    assert max(len(line) for line in transport.lines) <= CMD_EXE_LIMIT


def test_psexec_chunks_use_the_createprocess_limit():
    psexec = PsexecTransport(host_node("psexec"))
    assert psexec.command_line_limit() == CREATE_PROCESS_LIMIT
    scripts = registration._chunks(SCATTERED, registration.register_script, psexec.command_line_limit())
    lengths = [len(subprocess.list2cmdline(registration.powershell_argv(s))) for s in scripts]
    assert max(lengths) <= CREATE_PROCESS_LIMIT
    openssh = registration._chunks(SCATTERED, registration.register_script, CMD_EXE_LIMIT - len("cmd.exe /c "))
    assert len(openssh) > len(scripts)  # the smaller limit really splits finer


def test_linux_nodes_have_no_command_line_limit():
    node = Node("l", "host", "linux", "vsock", Access(kind="ssh", host="l.invalid"), source="t:1")
    assert FakeOpenSshToWindows(node, None).command_line_limit() is None
