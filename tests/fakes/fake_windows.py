"""FakeHyperVLab: Windows machines and Hyper-V sockets, for the harness's Windows paths in CI.

Why: there is no Windows or Hyper-V on these machines, yet the whole path -- the probe deployed
over SMB (or SFTP, tests/fakes/fake_openssh_windows.py), probe command lines, background servers
read back over SMB, service registration, VM IDs, observations -- must run in CI. What each piece
mirrors:

- PAExec runs (tests/fakes/fake_psexec.py: pypsexec client.py run_executable, PAExec's
  CreateProcess): the executable and its arguments split by CommandLineToArgvW's rules.
- powershell.exe -EncodedCommand: the script decoded (base64 of UTF-16LE, as `powershell.exe -?`
  documents) and recognised by its text; output written in the console's code page unless the
  script sets [Console]::OutputEncoding (issue 18 defect 9), errors as the script itself prints them.
- the probe: parsed with the probe's own argument parser (harness/probe/cli.py); `services` runs the
  probe's own registry code against tests/fakes/fake_winreg.py (CPython PC/winreg.c behaviour);
  CPython < 3.12 refuses as harness/probe/cli.py main does (no socket.AF_HYPERV).
- `serve --stop-file`: the server stops once the file appears, as probe/cli.py stop_on_file polls.

Hyper-V socket reachability is NOT mirrored from anything that runs: it restates the documents'
matrix A (documents 000/001), nothing more:

    target LOOPBACK  -> listeners on the same machine bound WILDCARD, LOOPBACK or CHILDREN
    target PARENT    -> (VM client) listeners on its host bound WILDCARD, LOOPBACK or CHILDREN
    target <VM ID>   -> (host client) listeners on that child VM bound WILDCARD or its own VM ID
    anything crossing the VM boundary needs the service GUID registered on the host;
    everything else is X with WSAECONNREFUSED (10061).

So a test on this fake shows that the harness carries a documented outcome through to the matrix
when Windows behaves as documented; it is never evidence of how Windows behaves. The X error code
is the fake's choice (the documents name none).
"""
from __future__ import annotations

import itertools
import json
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.hyperv.powershell import decode_command
from harness.probe import cli, registry, sockets
from harness.transports import psexec
from harness.transports.psexec import clients as psexec_clients
from tests.fakes.fake_psexec import FakePsexecClient, FakeServiceManager, FakeSmbShare, split_windows_cmdline

WILDCARD = "00000000-0000-0000-0000-000000000000"
LOOPBACK = "e0e16197-dd56-4a10-9195-5ee7a155a838"
CHILDREN = "90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd"
PARENT = "a42e7cda-d03f-480c-9cc2-a4de20abb878"
WSAECONNREFUSED = 10061
WSAEADDRINUSE = 10048

# What powershell.exe 5.1 writes to a redirected stderr under -EncodedCommand (PAExec, OpenSSH without a
# tty): the error stream as CLIXML, first the module-analysis progress record, then the error record's
# text in <S S="Error"> pieces with CR/LF escaped as _x000D__x000A_ (PowerShell/PowerShell#16678 shows
# the same shape from `ssh -T ... -EncodedCommand`).
GET_VM_NOT_RECOGNIZED_CLIXML = (
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
    '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV>'
    '<AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>'
    '<S S="Error">Get-VM : The term \'Get-VM\' is not recognized as the name of a cmdlet, function, script file, or '
    'operable program. Check the _x000D__x000A_</S>'
    '<S S="Error">spelling of the name, or if a path was included, verify that the path is correct and try again._x000D__x000A_</S>'
    '<S S="Error">At line:1 char:1_x000D__x000A_</S><S S="Error">+ Get-VM | ConvertTo-Json_x000D__x000A_</S>'
    '<S S="Error">+ ~~~~~~_x000D__x000A_</S>'
    '<S S="Error">    + CategoryInfo          : ObjectNotFound: (Get-VM:String) [], CommandNotFoundException_x000D__x000A_</S>'
    '<S S="Error">    + FullyQualifiedErrorId : CommandNotFoundException_x000D__x000A_</S>'
    '<S S="Error"> _x000D__x000A_</S></Objs>'
)

HYPERV_RAW_CATALOG = """\
Winsock Catalog Provider Entry
------------------------------------------------------
Entry Type:                         Base Service Provider
Description:                        Hyper-V RAW
Provider ID:                        {1234191B-4BF7-4CA7-86E0-DFD7C32B5445}
Provider Path:                      %SystemRoot%\\system32\\mswsock.dll
Catalog Entry ID:                   1017
Version:                            2
Address Family:                     34
Max Address Length:                 36
Min Address Length:                 36
Socket Type:                        1
Protocol:                           1
Service Flags:                      0x20026
Protocol Chain Length:              1

Winsock Catalog Provider Entry
------------------------------------------------------
Entry Type:                         Base Service Provider
Description:                        MSAFD Tcpip [TCP/IP]
Provider ID:                        {E70F1AA0-AB8B-11CF-8CA3-00805F48A192}
Provider Path:                      %SystemRoot%\\system32\\mswsock.dll
Catalog Entry ID:                   1001
Version:                            2
Address Family:                     2
Max Address Length:                 16
Min Address Length:                 16
Socket Type:                        1
Protocol:                           6
Service Flags:                      0x20066
Protocol Chain Length:              1
"""


@dataclass
class FakeWindowsMachine:
    """One Windows machine, addressed by the access.host the inventory gives it."""

    address: str
    role: str  # "host" | "vm"
    vm_id: str | None = None
    parent: str | None = None  # address of its Hyper-V host
    vm_name: str | None = None  # its name in the host's Get-VM
    python: str = "3.12.1"
    integration_services: bool = True
    winsock_catalog: str = HYPERV_RAW_CATALOG
    oem_codepage: str = "cp437"  # the console code page PAExec's child gets (949 on a Korean Windows)
    gcs: dict[str, str] = field(default_factory=dict)  # GuestCommunicationServices subkey -> ElementName
    gcs_owner: dict[str, str] = field(default_factory=dict)  # GUID -> HvsockMatrixOwner value, when written

    @property
    def python_version(self) -> tuple[int, int]:
        return tuple(int(x) for x in self.python.split(".")[:2])  # type: ignore[return-value]

    @property
    def hyperv_role(self) -> bool:
        return self.role == "host"


@dataclass
class FakeListener:
    machine: FakeWindowsMachine
    bind: str
    service: str
    port: int
    count: int
    base: str | None  # wrapper's file base (Windows path); None for a probe session's listener
    pids: tuple[int, int]  # (child, wrapper)
    accepted: int = 0
    stop_file: str | None = None  # `serve --stop-file`: the probe stops once this file exists (probe/cli.py)
    on_accept: Callable | None = None  # a session's listener: (peer, payload) -> its "accepted" line


def _ps_literal(script: str, pattern: str) -> str:
    match = re.search(pattern + r" = '((?:[^']|'')*)'", script)
    assert match, f"FakeHyperVLab: no {pattern} in script"
    return match.group(1).replace("''", "'")


_WINREG_LOCK = threading.Lock()


def with_winreg(machine: FakeWindowsMachine, fn):
    """Run `fn` with `import winreg` giving the machine's registry (tests/fakes/fake_winreg.py)."""
    from tests.fakes import fake_winreg

    with _WINREG_LOCK:
        saved = sys.modules.get("winreg")
        sys.modules["winreg"] = fake_winreg.module_for(machine)
        try:
            return fn()
        finally:
            if saved is None:
                sys.modules.pop("winreg", None)
            else:
                sys.modules["winreg"] = saved


def _out(line_obj: dict) -> bytes:
    return (json.dumps(line_obj, sort_keys=True) + "\r\n").encode()


class FakeHyperVLab:
    """The fake world behind FakePsexecClient and FakeSmbShare; install() patches the psexec transport."""

    def __init__(self, machines: list[FakeWindowsMachine]):
        self.machines = {m.address.lower(): m for m in machines}
        self.share = FakeSmbShare()
        written = self.share.write_bytes

        def write_bytes(unc: str, data: bytes) -> None:  # a stop file appearing stops its server, as the probe polls
            written(unc, data)
            for listener in list(self.listeners):
                if listener.stop_file and unc.lower() == psexec.admin_share_path(
                        listener.machine.address, listener.stop_file).lower():
                    self._finish(listener, 0)
        self.share.write_bytes = write_bytes
        self.listeners: list[FakeListener] = []
        self.pids = itertools.count(4100, 2)
        self.scripts: list[tuple[str, str]] = []  # (address, decoded PowerShell) in order
        self.commands: list[tuple[str, list[str]]] = []  # (address, argv) of everything run
        self.connects: list[dict] = []
        self.file_views: list[Callable] = []  # (machine, windows path) -> bool: files another channel (SFTP) wrote

    # --- wiring -----------------------------------------------------------------------------
    def client(self, server, username, password, port, encrypt):
        return FakePsexecClient(server, username, password, port, encrypt, handler=self.handle)

    def install(self, monkeypatch) -> FakeHyperVLab:
        monkeypatch.setattr(psexec_clients, "client_factory", self.client)
        monkeypatch.setattr(psexec_clients, "files_factory", self.share.session)
        return self

    def machine(self, address: str) -> FakeWindowsMachine:
        return self.machines[address.lower()]

    # --- PAExec ---------------------------------------------------------------------------
    def handle(self, client: FakePsexecClient, call: dict):
        machine = self.machine(client.server)
        exe = call["executable"]
        args = split_windows_cmdline(call["arguments"] or "")
        self.commands.append((machine.address, [exe, *args]))
        if exe.lower() == "powershell.exe":
            assert args[:3] == ["-NoProfile", "-NonInteractive", "-EncodedCommand"], args
            script = decode_command(args[3])
            self.scripts.append((machine.address, script))
            return self._powershell(machine, script, call["asynchronous"])
        if exe.lower() == "taskkill.exe":
            return self._taskkill(int(args[args.index("/PID") + 1]))
        if exe.lower() in ("py", "py.exe") or exe.lower().endswith("python.exe"):
            if exe.lower().startswith("py"):
                assert args[0] == "-3", args
                args = args[1:]
            return self._python(machine, args)
        return b"", f"'{exe}' is not recognized as an internal or external command\r\n".encode(), 9009

    # --- PowerShell scripts the harness sends ---------------------------------------------------
    def _powershell(self, machine: FakeWindowsMachine, script: str, asynchronous: bool):
        if "System.Diagnostics.ProcessStartInfo" in script:
            assert asynchronous, "background wrapper must run asynchronously"
            return self._spawn(machine, script)
        assert not asynchronous
        if "Get-Service -Name 'PAExec-*'" in script:  # harness/transports/psexec/paexec_sweep.py LIST_SCRIPT
            scm = FakeServiceManager.of(machine.address)
            lines = [f"service {n}" for n in scm.services] + [f"exe {e[:-4]}" for e in scm.exes]
            return ("".join(line + "\r\n" for line in lines)).encode(), b"", 0
        if "sc.exe delete $n" in script:  # paexec_sweep.remove_script
            scm = FakeServiceManager.of(machine.address)
            names = re.findall(r"'(PAExec-[^']+)'", script)
            for name in names:
                scm.delete(name)
            return "".join(f"removed {n}\r\n" for n in names).encode(), b"", 0
        if "Get-VM" in script and "ConvertTo-Json" in script:
            return self._get_vm(machine, script)
        return b"", b"FakeHyperVLab: unrecognised script\r\n", 1

    def _get_vm(self, machine: FakeWindowsMachine, script: str):
        """harness/hyperv/vmids.py GET_VM_SCRIPT as powershell.exe 5.1 would answer it under PAExec.

        The child gets a new console (issue 18, defect 9, from PAExec's Remote.cpp), whose output code page
        is the OEM one (`oem_codepage`, 949 on a Korean Windows): powershell.exe encodes what it writes
        with [Console]::OutputEncoding, i.e. that code page, unless the script sets it. The script's
        Out-Ascii turns every non-ASCII character into a \\uXXXX escape (as json.dumps' ensure_ascii).
        """
        if not machine.hyperv_role:
            data = {"error": "The term 'Get-VM' is not recognized as the name of a cmdlet, function, script file, "
                             "or operable program."}
            rc = 1
        else:
            vms = [{"Name": m.vm_name or m.address, "Id": m.vm_id} for m in self.machines.values()
                   if m.parent and m.parent.lower() == machine.address.lower()]
            data, rc = {"vms": vms}, 0
        text = json.dumps(data, separators=(",", ":"), ensure_ascii="Out-Ascii" in script) + "\r\n"
        utf8 = "[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding" in script
        return text.encode("utf-8" if utf8 else machine.oem_codepage, "replace"), b"", rc

    # --- the probe ------------------------------------------------------------------------------
    def _probe_args(self, machine: FakeWindowsMachine, args: list[str]):
        path = args[0]
        if not (self.share.exists(psexec.admin_share_path(machine.address, path))
                or any(exists(machine, path) for exists in self.file_views)):
            return None, (b"", f"python: can't open file '{path}': [Errno 2] No such file or directory\r\n".encode(), 2)
        if args[1:] == []:
            return None, (b"", b"usage: probe.py\r\n", 2)
        try:
            parsed = cli.parse_args(args[1:])  # the probe's own parser (--payload-hex decoded)
        except SystemExit:
            return None, (b"", b"probe.py: error: bad arguments\r\n", 2)
        if machine.python_version < (3, 12) and parsed.command in ("serve", "connect", "session"):
            # cli.main: no socket.AF_HYPERV before CPython 3.12 -> one error line, exit 2
            return None, (_out({"event": "error", "message": f"Python {machine.python} has no socket.AF_HYPERV: the probe needs "
                                "Python >= 3.12 on Windows nodes"}), b"", 2)
        return parsed, None

    def _python(self, machine: FakeWindowsMachine, args: list[str]):
        if args == ["--version"]:
            return f"Python {machine.python}\r\n".encode(), b"", 0
        parsed, failed = self._probe_args(machine, args)
        if failed:
            return failed
        if parsed.command == "info":
            vm_id = machine.vm_id if (machine.role == "vm" and machine.integration_services) else None
            facts = {"event": "info", "hostname": machine.address.split(".")[0].upper(), "os": "windows",
                     "kernel": "10", "python": machine.python, "local_cid": None, "dev_vsock": False,
                     "vsock_modules": [], "socat_version": None, "vm_id": vm_id,
                     "vm_id_source": "registry" if vm_id else None, "lab_node": parsed.lab_node,
                     "af_hyperv": machine.python_version >= (3, 12) and "Hyper-V RAW" in machine.winsock_catalog}
            return _out(facts), b"", 0
        if parsed.command == "services":
            # the probe's own registry code (harness/probe/registry.py) against this machine's registry
            answer = with_winreg(machine, lambda: registry.services_answer(parsed.action, parsed.items, parsed.owner))
            return _out(answer), b"", 0 if answer["event"] == "services" else 1
        if parsed.command == "connect":
            result = self._connect(machine, parsed)
            return _out(result), b"", 0 if result["outcome"] == "O" else 1
        return b"", b"FakeHyperVLab: only connect/info run in the foreground\r\n", 2

    def _service(self, parsed) -> str:
        return (parsed.service or sockets.service_for_port(parsed.port)).lower()

    def _spawn(self, machine: FakeWindowsMachine, script: str):
        exe = _ps_literal(script, r"\$psi\.FileName")
        args = split_windows_cmdline(_ps_literal(script, r"\$psi\.Arguments"))
        base = re.search(r"WriteAllText\('((?:[^']|'')*)\.pid'", script).group(1)
        wrapper_pid, child_pid = next(self.pids), next(self.pids)
        self.commands.append((machine.address, [exe, *args]))
        if exe.lower().startswith("py") and args and args[0] == "-3":
            args = args[1:]
        share = self.share
        unc = lambda suffix: psexec.admin_share_path(machine.address, base + suffix)
        share.write_bytes(unc(".pid"), str(child_pid).encode())
        parsed, failed = self._probe_args(machine, args)
        if failed or parsed.command != "serve":
            share.write_bytes(unc(".out"), failed[0] if failed else b"")
            share.write_bytes(unc(".err"), failed[1] if failed else b"not serve")
            share.write_bytes(unc(".rc"), b"2")
            return None, None, wrapper_pid
        bind = parsed.addr.lower()
        service = self._service(parsed)
        if any(l.machine is machine and l.service == service and l.bind == bind for l in self.listeners):
            share.write_bytes(unc(".out"), _out({"event": "bind_failed", "errno": WSAEADDRINUSE,
                                                 "errno_name": "WSAEADDRINUSE", "message": "address in use"}))
            share.write_bytes(unc(".err"), b"")
            share.write_bytes(unc(".rc"), b"1")
            return None, None, wrapper_pid
        self.listeners.append(FakeListener(machine, bind, service, parsed.port, parsed.count, base,
                                           (child_pid, wrapper_pid), stop_file=parsed.stop_file))
        share.write_bytes(unc(".out"), _out({"event": "listening", "family": parsed.family, "addr": parsed.addr,
                                             "port": parsed.port, "service": service}))
        return None, None, wrapper_pid  # pypsexec: async runs return (None, None, pid)

    def _finish(self, listener: FakeListener, rc: int) -> None:
        if listener.base is None:  # a session's: it stays the session's until stopped
            return
        unc = lambda suffix: psexec.admin_share_path(listener.machine.address, listener.base + suffix)
        if rc == 0:
            self.share.append(unc(".out"), _out({"event": "done", "accepted": listener.accepted, "peers": []}))
        self.share.write_bytes(unc(".err"), b"")
        self.share.write_bytes(unc(".rc"), str(rc).encode())
        self.listeners.remove(listener)

    def _taskkill(self, pid: int):
        for listener in list(self.listeners):
            if pid in listener.pids:
                self._finish(listener, 1)
                return f"SUCCESS: The process with PID {pid} has been terminated.\r\n".encode(), b"", 0
        return b"", f"ERROR: The process \"{pid}\" not found.\r\n".encode(), 128

    # --- Hyper-V socket semantics (matrix A) ------------------------------------------------------------
    def _host_of(self, machine: FakeWindowsMachine) -> FakeWindowsMachine | None:
        return self.machine(machine.parent) if machine.parent else None

    def _reaches(self, listener: FakeListener, client: FakeWindowsMachine, target: str) -> bool:
        server = listener.machine
        open_binds = (WILDCARD, LOOPBACK, CHILDREN)
        if target == LOOPBACK:
            return server is client and listener.bind in open_binds
        if target == PARENT:
            host = self._host_of(client)
            return (host is server and listener.bind in open_binds and listener.service in server.gcs)
        if server.vm_id and target == server.vm_id and self._host_of(server) is client:
            return listener.bind in (WILDCARD, server.vm_id) and listener.service in client.gcs
        return False

    def _connect(self, client: FakeWindowsMachine, parsed) -> dict:
        target = parsed.addr.lower()
        service = self._service(parsed)
        self.connects.append({"client": client.address, "target": target, "service": service})
        base = {"event": "result", "family": parsed.family, "addr": parsed.addr, "port": parsed.port}
        for listener in self.listeners:
            if listener.service == service and self._reaches(listener, client, target):
                listener.accepted += 1
                if listener.on_accept is not None:
                    listener.on_accept(client.vm_id or PARENT, parsed.payload)
                else:
                    self.share.append(psexec.admin_share_path(listener.machine.address, listener.base + ".out"),
                                      _out({"event": "accepted", "peer": client.vm_id or PARENT,
                                            "received": parsed.payload}))
                if listener.count and listener.accepted >= listener.count:
                    self._finish(listener, 0)
                return {**base, "outcome": "O", "phase": "reply", "errno": None, "errno_name": None,
                        "elapsed_ms": 0.9, "connect_ms": 0.6, "reply": "Hello: " + parsed.payload}
        return {**base, "outcome": "X", "phase": "connect", "errno": WSAECONNREFUSED,
                "errno_name": "WSAECONNREFUSED", "elapsed_ms": 1.4, "reply": None,
                "message": "[WinError 10061] No connection could be made because the target machine actively refused it"}


# --- the documents' lab as a fake: a Hyper-V host and one Windows VM ----------------------------------

FAKE_HOST = "hv-host.fake.invalid"  # .invalid: nothing ever resolves or connects there
FAKE_VM = "win-vm.fake.invalid"
FAKE_VM_ID = "b50f20e6-cf19-1796-ba60-d9cfe2d8fe29"  # the VM ID document 001 uses
FAKE_PASSWORD_ENV = "HVSOCK_FAKE_PSEXEC_PASSWORD"


def fake_lab_machines() -> list[FakeWindowsMachine]:
    return [
        FakeWindowsMachine(FAKE_HOST, "host"),
        FakeWindowsMachine(FAKE_VM, "vm", vm_id=FAKE_VM_ID, parent=FAKE_HOST, vm_name="Win11-VM"),
    ]


def fake_lab_inventory(vm_id: str | None = FAKE_VM_ID, extra_nodes=()):
    """An Inventory of the fake lab: hv-host and win-vm, both over psexec with a password from the env."""
    from harness.node import Access, Inventory, Node

    def access(host):
        return Access(kind="psexec", host=host, user="LAB\\Administrator", password_env=FAKE_PASSWORD_ENV)

    nodes = [
        Node("hv-host", "host", "windows", "hyperv", access(FAKE_HOST), source="fake:1"),
        Node("win-vm", "vm", "windows", "hyperv", access(FAKE_VM), parent="hv-host", vm_id=vm_id,
             facts={"hyperv_vm_name": "Win11-VM"}, source="fake:2"),
        *extra_nodes,
    ]
    return Inventory("fake-hyperv-lab", "fake-hyperv-lab.yaml", {n.name: n for n in nodes})
