"""What reaches a Windows node during a whole run of matrix A, over SSH and over psexec (issue 18).

A run as pytest makes it (RunSession: probes, VM IDs, service registration, every cell, close) against
the fake lab: FakeHyperVLab behind Win32-OpenSSH (tests/fakes/fake_openssh_windows.py) or PAExec + SMB
(tests/fakes/fake_psexec.py). Every command line and every file path sent to a Windows node is recorded,
and the test asserts the design's one rule: the only programs a Windows node is asked to start are the
probe (`<python> <run folder>\\probe.pyz ...`) and named PowerShell scripts, and no POSIX tool or path
(`sh`, `mktemp`, `sha256sum`, `rm`, `kill`, `/tmp`) appears anywhere.

Issue 18 defect 1 (Windows over SSH could not start: `sh -c ... mktemp`, `sha256sum`, `rm -rf` under
/tmp, which cmd.exe answers with "not recognized") is the SSH half: before the fix every cell was E.
The outcomes below are matrix A as the fake restates the documents -- they show the run completes with
real outcomes, not that Windows behaves so.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.hyperv import vmids
from harness.hyperv.powershell import decode_command
from harness.node import Access, Inventory, Node
from harness.outcome import Outcome
from harness.scenario import load_cells
from harness.session import RunSession
from harness.transports import psexec
from harness.transports.psexec import paexec_sweep
from harness.transports.psexec import process as psexec_process
from tests.fakes.fake_openssh_windows import FakeWin32OpenSSH
from tests.fakes.fake_psexec import FakePsexecClient, split_windows_cmdline
from tests.fakes.fake_windows import FAKE_HOST, FAKE_PASSWORD_ENV, FAKE_VM, FAKE_VM_ID, FakeHyperVLab, fake_lab_machines

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "a-hyperv-wildcards.yaml"
DOCUMENTED = {"A1": "O", "A2": "O", "A3": "O", "A4": "O", "A5": "O", "A6": "O", "A7": "X", "A8": "O",
              "A9": "O", "A10": "O", "A11": "X", "A12": "O"}
POSIX = re.compile(r"(?<![\w.-])(sh|mktemp|sha256sum|rm|kill)(?![\w-])|/tmp\b")
PYTHONS = ("py", "py.exe", "python", "python.exe")


def inventory(kind: str) -> Inventory:
    """The documents' lab: a Hyper-V host and a Windows VM, no vm_id given (the run finds it)."""
    def access(host):
        if kind == "ssh":
            return Access(kind="ssh", host=host, user="tester", host_key_policy="ignore", use_ssh_config=False)
        return Access(kind="psexec", host=host, user="LAB\\Administrator", password_env=FAKE_PASSWORD_ENV)
    nodes = [Node("hv-host", "host", "windows", "hyperv", access(FAKE_HOST), source="t:1"),
             Node("win-vm", "vm", "windows", "hyperv", access(FAKE_VM), parent="hv-host",
                  facts={"hyperv_vm_name": "Win11-VM"}, source="t:2")]
    return Inventory("fake-hyperv-lab", "fake.yaml", {n.name: n for n in nodes})


@pytest.fixture
def lab(monkeypatch):
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "fake-secret")
    monkeypatch.setattr(psexec_process, "POLL_START", 0.005)
    FakePsexecClient.created.clear()
    lab = FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    lab.smb_paths = []
    share = lab.share
    for name in ("write_bytes", "append", "read_from", "remove", "remove_tree"):
        real = getattr(share, name)

        def logged(unc, *args, _real=real, _name=name):
            lab.smb_paths.append((_name, unc))
            return _real(unc, *args)
        setattr(share, name, logged)
    yield lab
    psexec.shared_clients().clear()


def run_matrix_a(kind: str, lab, monkeypatch):
    ssh = FakeWin32OpenSSH(lab).install(monkeypatch) if kind == "ssh" else None
    inv = inventory(kind)
    cells = [c for c in load_cells(SCENARIO, inv) if c.label in DOCUMENTED]
    run = RunSession(inv)
    try:
        run.start(cells)
        observations = {c.label: run.run(c) for c in cells}
    finally:
        run.close()
    return observations, run, ssh


def sent_to_windows(kind: str, lab, ssh) -> tuple[list[list[str]], list[str]]:
    """(argv of every program started on a Windows node, every file path sent there)."""
    if kind == "ssh":
        argvs = [split_windows_cmdline(line) for op, _, line, *_ in ssh.transcript if op == "exec"]
        paths = [entry[3] for entry in ssh.transcript if entry[0] == "sftp"]
        lines = [entry[2] for entry in ssh.transcript if entry[0] == "exec"]
    else:
        argvs = [argv for _, argv in lab.commands]
        paths = [unc for _, unc in lab.smb_paths]
        lines = [" ".join(argv) for argv in argvs]
    for line in lines:
        assert not POSIX.search(line), line
    return argvs, paths


def probe_argv(argv: list[str]) -> bool:
    """`<python> [-3] <...>\\probe.pyz <command> ...`"""
    if not argv or (argv[0].lower() not in PYTHONS and not argv[0].lower().endswith("python.exe")):
        return False
    rest = argv[1:] if argv[1:2] != ["-3"] else argv[2:]
    return bool(rest) and rest[0].endswith("\\probe.pyz") and rest[0][1:3] == ":\\"


def named_script(script: str) -> str | None:
    """Which of the harness's PowerShell scripts this is, or None."""
    if script == vmids.GET_VM_SCRIPT:
        return "Get-VM"
    if script == paexec_sweep.LIST_SCRIPT:
        return "PAExec sweep list"
    if "sc.exe delete $n" in script:
        return "PAExec sweep remove"
    if "System.Diagnostics.ProcessStartInfo" in script:  # psexec's background wrapper: of the probe only
        exe = re.search(r"\$psi\.FileName = '((?:[^']|'')*)'", script).group(1)
        args = split_windows_cmdline(re.search(r"\$psi\.Arguments = '((?:[^']|'')*)'", script).group(1).replace("''", "'"))
        return "background wrapper of the probe" if probe_argv([exe, *args]) else None
    return None


@pytest.mark.parametrize("kind", ["ssh", "psexec"])
def test_a_whole_run_starts_only_the_probe_and_named_scripts_on_windows(kind, lab, monkeypatch):
    lab.machine(FAKE_VM).integration_services = False  # so the host's Get-VM is asked too
    observations, run, ssh = run_matrix_a(kind, lab, monkeypatch)
    got = {label: obs.outcome.value for label, obs in observations.items()}
    assert got == DOCUMENTED, {k: observations[k].detail for k in got if got[k] != DOCUMENTED[k]}
    assert run.inventory.node("win-vm").vm_id == FAKE_VM_ID  # from the host's Get-VM (issue 18 defect 2)

    argvs, paths = sent_to_windows(kind, lab, ssh)
    started = []
    for argv in argvs:
        if probe_argv(argv):
            started.append("probe " + (argv[2] if argv[1] != "-3" else argv[3]))
            continue
        assert argv[:4] == ["powershell.exe", "-NoProfile", "-NonInteractive", "-EncodedCommand"], argv
        script = decode_command(argv[4])
        name = named_script(script)
        assert name is not None, script
        assert not POSIX.search(script), script
        started.append(name)
    assert "Get-VM" in started and any(s.startswith("probe ") for s in started)
    for path in paths:
        assert not POSIX.search(path), path
        if path == ".":  # SFTP realpath("."): where the login's own folder is
            continue
        assert re.match(r"^(/C:/|\\\\[^\\]+\\C\$\\)", path), path  # a Windows path, as SFTP or SMB names it
    assert lab.listeners == [] and lab.machine(FAKE_HOST).gcs == {}  # every server ended, every GUID removed
    if kind == "ssh":
        # one probe process per node for the whole run, started once: the session
        assert sorted(s for s in started if s.startswith("probe ")) == ["probe session", "probe session"]
        assert ssh.files[FAKE_HOST]["files"] == {} and ssh.files[FAKE_VM]["files"] == {}  # run folders emptied
        assert not any(d.startswith("/C:/Users/tester/hvsock-matrix.") for d in ssh.files[FAKE_HOST]["dirs"])
    else:
        assert not any(argv[0].lower() == "taskkill.exe" for argv in argvs)  # servers stop on their stop file


def test_posix_tools_would_have_failed_on_a_windows_node(lab, monkeypatch):
    """The fake answers as cmd.exe does: the old deployment's first command could not run at all."""
    ssh = FakeWin32OpenSSH(lab).install(monkeypatch)
    from harness.transports.ssh import SSHTransport

    t = SSHTransport(inventory("ssh").node("hv-host"))
    res = t.run(["sh", "-c", "umask 077 && mkdir -p -- \"$1\" && exec mktemp -d -- \"$1/$2\""], timeout=5)
    assert (res.rc, "is not recognized" in res.stderr) == (9009, True)
    cmd = t.probe_command()
    assert cmd[1].startswith("C:\\Users\\tester\\hvsock-matrix.") and cmd[1].endswith("\\probe.pyz")
    folder = "/" + cmd[1].rsplit("\\", 1)[0].replace("\\", "/")
    t.close()
    assert [e[2:] for e in ssh.transcript if e[0] == "sftp" and e[2] in ("mkdir", "remove", "rmdir")] == [
        ("mkdir", folder), ("remove", folder + "/probe.pyz"), ("rmdir", folder)]


def test_windows_over_ssh_on_python_311_reads_e_never_x(lab, monkeypatch):
    """CPython < 3.12 has no AF_HYPERV: the VM's probe session refuses to start, its cells are E."""
    lab.machine(FAKE_VM).python = "3.11.9"
    observations, _, _ = run_matrix_a("ssh", lab, monkeypatch)
    cells = {c.label: c for c in load_cells(SCENARIO, inventory("ssh"))}
    on_vm = {k: o for k, o in observations.items() if "win-vm" in (cells[k].server_on, cells[k].client_on)}
    assert on_vm and {o.outcome for o in on_vm.values()} == {Outcome.E}
    assert all("3.12" in o.detail for o in on_vm.values()), {k: o.detail for k, o in on_vm.items()}
