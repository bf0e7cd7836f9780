"""The psexec transport against FakePsexecClient (pypsexec's Client cannot reach a real SMB server here).

Pins what a Windows node receives -- executable, argument string, EncodedCommand text -- and the
Client rules: one per process per host, serialised runs, never cleanup(), password only from the
environment.
"""
from __future__ import annotations

import logging
import subprocess
import threading
import time
import uuid

import pytest

from harness.errors import NodeError
from harness.hyperv.powershell import decode_command, encode_command
from harness.node import Access, Node
from harness.transports import psexec
from harness.transports.base import CommandTimeout, Transport
from harness.transports.psexec import PsexecTransport, admin_share_path
from harness.transports.psexec import clients as psexec_clients
from harness.transports.psexec import process as psexec_process
from tests.fakes.fake_psexec import FakePsexecClient, FakeServiceManager, FakeSmbShare, split_windows_cmdline

HOST = "win-a.fake.invalid"
ENV = "HVSOCK_FAKE_PSEXEC_PASSWORD"
SECRET = "S3cr3t-not-for-logs"


def node(name="win-a", host=HOST, **access):
    fields = {"kind": "psexec", "host": host, "user": "LAB\\Administrator", "password_env": ENV, **access}
    return Node(name, "host", "windows", "hyperv", Access(**fields))


@pytest.fixture
def fake(monkeypatch):
    """Installs FakePsexecClient (answers via `fake.handler`) and a FakeSmbShare."""
    monkeypatch.setenv(ENV, SECRET)
    FakePsexecClient.created.clear()
    FakePsexecClient.stalled = set()
    FakePsexecClient.connect_seconds = 0.0
    FakeServiceManager.machines.clear()
    share = FakeSmbShare()

    class Box:
        handler = staticmethod(lambda client, call: (b"ok\r\n", b"", 0))

    box = Box()
    box.share = share
    def client(server, user, pw, port, enc):
        return FakePsexecClient(server, user, pw, port, enc, handler=lambda c, call: box.handler(c, call))
    monkeypatch.setattr(psexec_clients, "client_factory", client)
    monkeypatch.setattr(psexec_clients, "files_factory", share.session)
    yield box
    psexec.shared_clients().clear()
    psexec_clients._BROKEN.clear()
    FakePsexecClient.connect_seconds = 0.0


def runs(client):
    """run_executable calls, without the once-per-Client PAExec leftover sweep (paexec_sweep)."""
    return [call for name, call in client.calls if name == "run_executable" and not _is_sweep(call)]


def _is_sweep(call) -> bool:
    args = split_windows_cmdline(call["arguments"] or "")
    return "-EncodedCommand" in args and "PAExec-" in decode_command(args[args.index("-EncodedCommand") + 1])


def hanging_until(release: threading.Event):
    """A handler whose runs (not the leftover sweep) hang until `release` is set."""
    def hang(c, call):
        if not _is_sweep(call):
            release.wait(30)
        return b"", b"", 0
    return hang


def test_run_sends_executable_and_list2cmdline_arguments(fake):
    fake.handler = lambda c, call: (b"line1\r\nline2\r\n", b"warn\r\n", 3)
    t = PsexecTransport(node())
    result = t.run(["C:\\Program Files\\Python312\\python.exe", "-c", 'print("a b")', "x y"], timeout=12.5)
    assert (result.rc, result.stdout, result.stderr) == (3, "line1\nline2\n", "warn\n")
    (client,) = FakePsexecClient.created
    (call,) = runs(client)
    assert call == {"executable": "C:\\Program Files\\Python312\\python.exe",
                    "arguments": '-c "print(\\"a b\\")" "x y"', "asynchronous": False, "run_elevated": True,
                    "timeout_seconds": 13, "stdin": None}
    t.close()


@pytest.mark.parametrize("argv", [
    ["probe.py", "connect", "--payload", "World!"],
    ["a b", 'he said "hi"', "trailing\\", "back\\\\slash\\\"quote", "", "tab\there"],
])
def test_arguments_parse_back_to_the_same_argv_on_windows(fake, argv):
    t = PsexecTransport(node())
    t.run(["python.exe", *argv], timeout=5)
    (call,) = runs(FakePsexecClient.created[0])
    assert split_windows_cmdline(call["arguments"]) == argv
    assert call["arguments"] == subprocess.list2cmdline(argv)
    t.close()


def test_powershell_goes_as_encoded_command(fake):
    t = PsexecTransport(node())
    script = "$x = 'a b'\nWrite-Output \"$x\"\n"
    t.run_powershell(script, timeout=30)
    (call,) = runs(FakePsexecClient.created[0])
    assert call["executable"] == "powershell.exe"
    assert call["arguments"] == "-NoProfile -NonInteractive -EncodedCommand " + encode_command(script)
    assert call["arguments"] == ("-NoProfile -NonInteractive -EncodedCommand "
                                 "JAB4ACAAPQAgACcAYQAgAGIAJwAKAFcAcgBpAHQAZQAtAE8AdQB0AHAAdQB0ACAAIgAkAHgAIgAKAA==")
    assert decode_command(call["arguments"].split()[-1]) == script
    t.close()


def test_stdin_is_passed_to_the_process(fake):
    t = PsexecTransport(node())
    t.run(["findstr.exe", "x"], timeout=5, stdin=b"x\r\n")
    assert runs(FakePsexecClient.created[0])[0]["stdin"] == b"x\r\n"
    t.close()


def test_one_client_per_process_per_host_and_no_cleanup(fake):
    a1, a2 = PsexecTransport(node("a1")), PsexecTransport(node("a2"))
    b = PsexecTransport(node("b", host="win-b.fake.invalid"))
    for t in (a1, a2, b, a1):
        t.run(["cmd.exe", "/c", "ver"], timeout=5)
    assert [c.server for c in FakePsexecClient.created] == [HOST, "win-b.fake.invalid"]
    client_a = FakePsexecClient.created[0]
    assert client_a.names()[:3] == ["__init__", "connect", "create_service"]
    assert len(runs(client_a)) == 3
    a1.close()
    assert "remove_service" not in client_a.names()  # a2 still uses it
    a2.close()
    b.close()
    for client in FakePsexecClient.created:
        assert client.names()[-2:] == ["remove_service", "disconnect"]
        assert "cleanup" not in client.names()
    assert psexec.shared_clients() == {}


def test_a_forked_process_gets_its_own_client(fake, monkeypatch):
    t = PsexecTransport(node())
    t.run(["cmd.exe"], timeout=5)
    monkeypatch.setattr(psexec_clients.os, "getpid", lambda: 999999)
    child = PsexecTransport(node())
    child.run(["cmd.exe"], timeout=5)
    assert len(FakePsexecClient.created) == 2
    assert (999999, f"{HOST}:445") in psexec.shared_clients()


def test_client_constructor_gets_host_user_password_port_and_encryption(fake):
    t = PsexecTransport(node(port=4445))
    t.run(["cmd.exe"], timeout=5)
    client = FakePsexecClient.created[0]
    assert (client.server, client.username, client.password, client.port, client.encrypt) == \
        (HOST, "LAB\\Administrator", SECRET, 4445, True)
    assert client.calls[1] == ("connect", {"timeout": 30})
    t.close()


def test_missing_password_variable_is_one_line_naming_node_and_variable(fake, monkeypatch):
    monkeypatch.delenv(ENV)
    t = PsexecTransport(node())
    with pytest.raises(NodeError) as err:
        t.run(["cmd.exe"], timeout=5)
    assert str(err.value) == (f"node win-a: environment variable {ENV} is not set "
                              f"(the psexec password for LAB\\Administrator@{HOST})")
    assert FakePsexecClient.created == []


def test_password_never_reaches_logs_or_errors(fake, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)

    def boom(c, call):
        raise RuntimeError("STATUS_LOGON_FAILURE\nsecond line")
    fake.handler = boom
    t = PsexecTransport(node())
    with pytest.raises(NodeError) as err:
        t.run(["cmd.exe"], timeout=5)
    assert str(err.value) == "node win-a: psexec failed: RuntimeError: STATUS_LOGON_FAILURE"
    assert SECRET not in caplog.text and SECRET not in str(err.value) and SECRET not in repr(t.__dict__)


def test_connect_failure_is_a_node_error(fake, monkeypatch):
    def refuse(server, user, pw, port, enc):
        raise ConnectionRefusedError(111, "Connection refused")
    monkeypatch.setattr(psexec_clients, "client_factory", refuse)
    with pytest.raises(NodeError, match=rf"^node win-a: psexec connect to {HOST}:445 failed: ConnectionRefusedError"):
        PsexecTransport(node()).run(["cmd.exe"], timeout=5)


def test_a_hung_call_fails_the_node_fast_until_its_client_is_retired(fake, monkeypatch):
    """pypsexec names every Client of this process alike: a second one must not be built while the
    hung one still runs (its create_service would delete the busy service)."""
    monkeypatch.setattr(psexec_clients, "CALL_GRACE", 0.2)
    release = threading.Event()
    fake.handler = hanging_until(release)
    t = PsexecTransport(node())
    start = time.monotonic()
    with pytest.raises(CommandTimeout, match="did not return within"):
        t.run(["cmd.exe"], timeout=0.1)
    assert time.monotonic() - start < 3
    hung_shared = next(iter(psexec.shared_clients().values()))
    fake.handler = lambda c, call: (b"fine", b"", 0)
    for _ in range(2):  # every further call on the node: E at once, with the reason
        start = time.monotonic()
        with pytest.raises(NodeError, match="did not return within") as err:
            t.run(["cmd.exe"], timeout=1)
        assert time.monotonic() - start < 1 and "hung" in err.value.message
    scm = FakeServiceManager.of(HOST)
    assert len(FakePsexecClient.created) == 1 and scm.deleted_while_busy == []
    release.set()  # the hung call returns; its Client removes its own service and disconnects
    assert hung_shared.retired.wait(30)
    assert t.run(["cmd.exe"], timeout=1).stdout == "fine"  # a fresh Client, names free again
    assert len(FakePsexecClient.created) == 2 and scm.deleted_while_busy == []
    name = FakePsexecClient.created[0].service_name
    assert scm.log == [("create", name), ("delete", name), ("create", name)]
    t.close()
    assert scm.services == {} and scm.exes == set()


def test_runs_on_one_client_are_serialised(fake):
    def slow(c, call):
        time.sleep(0.05)
        return b"", b"", 0
    fake.handler = slow
    ts = [PsexecTransport(node(f"n{i}")) for i in range(4)]
    threads = [threading.Thread(target=t.run, args=(["cmd.exe"], 5)) for t in ts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    (client,) = FakePsexecClient.created
    assert len(runs(client)) == 4 and client.max_parallel_runs == 1


def test_open_transport_picks_the_psexec_transport(fake):
    from harness.transports import open_transport, transport_class

    assert transport_class("psexec") is PsexecTransport
    t = open_transport(node())
    assert isinstance(t, PsexecTransport) and isinstance(t, Transport)
    assert FakePsexecClient.created == []  # nothing contacted until the first call
    t.close()


def test_admin_share_paths():
    assert admin_share_path("h", r"C:\Windows\Temp\x\probe.py") == r"\\h\C$\Windows\Temp\x\probe.py"
    assert admin_share_path("h", "d:/data/f") == r"\\h\D$\data\f"
    with pytest.raises(ValueError):
        admin_share_path("h", r"\\other\share\f")


def test_a_workdir_that_is_not_a_drive_path_is_refused():
    with pytest.raises(NodeError, match="absolute Windows path"):
        PsexecTransport(node(workdir="%TEMP%\\x"))


def test_put_and_probe_command_deploy_once(fake, tmp_path):
    t = PsexecTransport(node())
    local = tmp_path / "f.txt"
    local.write_bytes(b"data\n")
    t.put(str(local), r"C:\work\f.txt")
    assert fake.share.files[r"\\win-a.fake.invalid\c$\work\f.txt"] == b"data\n"
    probe = psexec.DEFAULT_WORKDIR + r"\probe.pyz"  # C:\Windows\Temp\hvsock-matrix-<fresh per run>\probe.py
    assert psexec.RUN_DIR_NAME.startswith("hvsock-matrix-") and len(psexec.RUN_DIR_NAME) == 14 + 32
    assert t.probe_command() == ["py", "-3", probe]
    assert t.probe_command() == ["py", "-3", probe]
    deployed = fake.share.files[psexec.admin_share_path("win-a.fake.invalid", probe).lower()]
    assert deployed.startswith(b"#!/usr/bin/env python3")
    assert len([s for s in fake.share.sessions]) == 1
    other = PsexecTransport(node(python=r"C:\Program Files\Python312\python.exe", workdir=r"D:\hv"))
    assert other.probe_command() == [r"C:\Program Files\Python312\python.exe", rf"D:\hv\{psexec.RUN_DIR_NAME}\probe.pyz"]
    t.close()
    other.close()


SPAWN_SCRIPT = r"""$ErrorActionPreference = 'Stop'
$env:PYTHONUNBUFFERED = '1'
$env:PYTHONIOENCODING = 'utf-8'
$null = New-Item -ItemType Directory -Force -Path 'C:\Windows\Temp\hvsock-matrix\spawn'
try {
    $psi = New-Object System.Diagnostics.ProcessStartInfo
    $psi.FileName = 'py'
    $psi.Arguments = '-3 C:\Windows\Temp\hvsock-matrix\probe.py serve --family hyperv --addr "it''s here" --port 19000'
    $psi.UseShellExecute = $false
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $p = [System.Diagnostics.Process]::Start($psi)
    [System.IO.File]::WriteAllText('C:\Windows\Temp\hvsock-matrix\spawn\0123456789abcdef.pid', [string]$p.Id)
    $err = $p.StandardError.ReadToEndAsync()
    $out = [System.IO.File]::Open('C:\Windows\Temp\hvsock-matrix\spawn\0123456789abcdef.out', 'Create', 'Write', 'ReadWrite, Delete')
    $utf8 = New-Object System.Text.UTF8Encoding($false)
    while ($null -ne ($line = $p.StandardOutput.ReadLine())) {
        $bytes = $utf8.GetBytes($line + "`n")
        $out.Write($bytes, 0, $bytes.Length)
        $out.Flush()
    }
    $out.Close()
    $p.WaitForExit()
    [System.IO.File]::WriteAllText('C:\Windows\Temp\hvsock-matrix\spawn\0123456789abcdef.err', $err.Result)
    [System.IO.File]::WriteAllText('C:\Windows\Temp\hvsock-matrix\spawn\0123456789abcdef.rc', [string]$p.ExitCode)
} catch {
    [System.IO.File]::WriteAllText('C:\Windows\Temp\hvsock-matrix\spawn\0123456789abcdef.err', [string]$_)
    [System.IO.File]::WriteAllText('C:\Windows\Temp\hvsock-matrix\spawn\0123456789abcdef.rc', '-1')
}
""".replace("C:\\Windows\\Temp\\hvsock-matrix", psexec.DEFAULT_WORKDIR)  # the run's own folder


def test_spawn_runs_the_wrapper_asynchronously_and_reads_lines_back_over_smb(fake, monkeypatch):
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID("0123456789abcdef0123456789abcdef"))
    fake.handler = lambda c, call: (None, None, 7100) if call["asynchronous"] else (b"SUCCESS", b"", 0)
    t = PsexecTransport(node())
    argv = ["py", "-3", psexec.DEFAULT_WORKDIR + r"\probe.py", "serve", "--family", "hyperv",
            "--addr", "it's here", "--port", "19000"]
    proc = t.spawn(argv)
    (call,) = runs(FakePsexecClient.created[0])
    assert call["asynchronous"] is True and call["executable"] == "powershell.exe" and call["stdin"] is None
    assert decode_command(call["arguments"].split()[-1]) == SPAWN_SCRIPT
    assert proc.pid == 7100  # wrapper pid until the child's pid file exists

    base = psexec.admin_share_path("win-a.fake.invalid", psexec.DEFAULT_WORKDIR + r"\spawn\0123456789abcdef")
    with pytest.raises(TimeoutError, match=r"no output line from background process within 0\.2s"):
        proc.read_line(0.2)
    fake.share.write_bytes(base + ".pid", b"7102")
    fake.share.write_bytes(base + ".out", b'{"event":"listening"}\n{"event":"acc')
    assert proc.read_line(1) == '{"event":"listening"}'
    assert proc.pid == 7102
    assert proc.wait(0.1) is None
    fake.share.append(base + ".out", b'epted"}\n{"event":"done"}\n')
    fake.share.write_bytes(base + ".err", b"l1\r\nTraceback: boom\r\n")
    fake.share.write_bytes(base + ".rc", b"0")
    assert proc.read_line(1) == '{"event":"accepted"}'
    assert proc.read_line(1) == '{"event":"done"}'
    assert proc.read_line(1) is None
    assert proc.wait(1) == 0
    assert proc.stderr_tail().splitlines()[-1] == "Traceback: boom"  # kept after the files were removed
    assert not any(k.startswith(base.lower()) for k in fake.share.files)
    proc.kill()  # already ended: nothing to kill
    assert len(runs(FakePsexecClient.created[0])) == 1
    with pytest.raises(NodeError, match="no stdin"):
        proc.write_line("{}")
    t.close()


def test_kill_taskkills_the_child_and_the_wrapper_reports_its_exit(fake, monkeypatch):
    def handler(c, call):
        if call["asynchronous"]:
            return None, None, 7200
        base = admin_share_path(HOST, proc.base)
        fake.share.write_bytes(base + ".err", b"killed\r\n")
        fake.share.write_bytes(base + ".rc", b"1")  # the wrapper saw EOF and wrote the exit code
        return b"SUCCESS", b"", 0
    fake.handler = handler
    t = PsexecTransport(node())
    proc = t.spawn(["py", "-3", "probe.py", "serve"])
    fake.share.write_bytes(admin_share_path(HOST, proc.base + ".pid"), b"7202")
    fake.share.write_bytes(admin_share_path(HOST, proc.base + ".out"), b"")
    proc.kill()
    kills = [(c["executable"], c["arguments"]) for c in runs(FakePsexecClient.created[0]) if not c["asynchronous"]]
    assert kills == [("taskkill.exe", "/PID 7202 /T /F")]
    assert proc.wait(0) == 1 and proc.stderr_tail() == "killed"
    assert not any(k.startswith(admin_share_path(HOST, proc.base).lower()) for k in fake.share.files)  # tidied
    t.close()


def test_kill_takes_the_wrapper_too_when_it_does_not_finish(fake, monkeypatch):
    monkeypatch.setattr(psexec_process, "KILL_GRACE", 0.1)
    fake.handler = lambda c, call: (None, None, 7200) if call["asynchronous"] else (b"SUCCESS", b"", 0)
    t = PsexecTransport(node())
    proc = t.spawn(["py", "-3", "probe.py", "serve"])
    fake.share.write_bytes(admin_share_path(HOST, proc.base + ".pid"), b"7202")
    proc.kill()
    kills = [(c["executable"], c["arguments"]) for c in runs(FakePsexecClient.created[0]) if not c["asynchronous"]]
    assert kills == [("taskkill.exe", "/PID 7202 /T /F"), ("taskkill.exe", "/PID 7200 /T /F")]
    assert proc.wait(0) == 1
    t.close()


class FakeSmbclientModule:
    """Stands in for smbprotocol's smbclient module (tests/test_smb_samba.py runs the real one against
    Samba). Faithful where the port matters: connections are pooled by `server.lower():port` and every
    call without port= means 445 (smbclient/_pool.py register_session, get_smb_tree); a call whose key
    has no registered session opens a new connection with no credentials, recorded in `anonymous`."""

    def __init__(self):
        from smbprotocol.exceptions import NtStatus, SMBOSError

        self.files: dict[str, bytes] = {}
        self.dirs: list[str] = []
        self.sessions: list[tuple] = []
        self.pool: dict[str, str | None] = {}  # connection key -> username
        self.anonymous: list[str] = []
        self.reset: list[dict] = []
        self._missing = lambda path: SMBOSError(NtStatus.STATUS_OBJECT_NAME_NOT_FOUND, path)

    def register_session(self, server, username=None, password=None, port=445, encrypt=None, connection_timeout=60,
                         connection_cache=None, **kwargs):
        self.sessions.append((server, username, port, encrypt, connection_timeout))
        self.pool[f"{server.lower()}:{port}"] = username

    def _tree(self, path, port=445, connection_cache=None, username=None, **kwargs):
        key = f"{path.lstrip(chr(92)).split(chr(92))[0].lower()}:{port}"
        if key not in self.pool:
            self.anonymous.append(key)
            self.pool[key] = username

    def mkdir(self, path, **kwargs):
        from smbprotocol.exceptions import NtStatus, SMBOSError

        self._tree(path, **kwargs)
        if path in self.dirs:
            raise SMBOSError(NtStatus.STATUS_OBJECT_NAME_COLLISION, path)
        self.dirs.append(path)

    def open_file(self, path, mode="r", share_access=None, **kwargs):
        import io

        self._tree(path, **kwargs)
        fake = self
        if "r" in mode:
            if path not in self.files:
                raise self._missing(path)
            assert share_access == "rwd"  # the wrapper still has the file open for writing
            return io.BytesIO(self.files[path])

        class Writer(io.BytesIO):
            def close(self):
                fake.files[path] = self.getvalue()
                super().close()
        return Writer()

    def remove(self, path, **kwargs):
        self._tree(path, **kwargs)
        if path not in self.files:
            raise self._missing(path)
        del self.files[path]

    def reset_connection_cache(self, fail_on_error=True, connection_cache=None):
        self.reset.append(connection_cache)


@pytest.mark.parametrize("port", [445, 4455])
def test_smb_files_over_the_smbclient_api(monkeypatch, port):
    import smbclient

    fake_module = FakeSmbclientModule()
    for name in ("register_session", "mkdir", "open_file", "remove", "reset_connection_cache"):
        monkeypatch.setattr(smbclient, name, getattr(fake_module, name))
    files = psexec.SmbFiles("h.fake.invalid", "LAB\\u", SECRET, port, 30)
    assert fake_module.sessions == [("h.fake.invalid", "LAB\\u", port, True, 30)]
    unc = r"\\h.fake.invalid\C$\w\spawn\x.out"
    assert files.read_from(unc, 0) is None  # not written yet: None, not an error
    files.write_bytes(unc, b"line1\nline2\n")
    assert fake_module.dirs == [r"\\h.fake.invalid\C$\w", r"\\h.fake.invalid\C$\w\spawn"]
    files.write_bytes(unc, b"again")  # directories exist already: fine
    assert files.read_from(unc, 0) == b"again"
    files.remove(unc)
    files.remove(unc)  # already gone: fine
    assert files.read_from(unc, 0) is None
    assert fake_module.anonymous == []  # every call went to the registered server:port
    files.close()
    assert len(fake_module.reset) == 1 and fake_module.reset[0] is not None  # only our own cache


def test_a_probe_copy_that_does_not_match_is_never_run(fake, tmp_path):
    """The copy is read back over SMB and compared (sha256) before probe_command returns it."""
    t = PsexecTransport(node())
    real_put = t.put

    def tampering_put(local_path, remote_path):
        real_put(local_path, remote_path)
        fake.share.write_bytes(psexec.admin_share_path(HOST, remote_path), b"import os  # planted\n")

    t.put = tampering_put
    with pytest.raises(NodeError, match="does not match ours"):
        t.probe_command()
    t.close()


# -- concurrency (issue 18.5-18.7): what four cells in flight and a stalled host do to the pool -------------

def test_four_cells_in_flight_on_one_host_queue_without_being_called_hung(fake, monkeypatch):
    """Each call takes 0.25 s of a 0.1 + 0.3 s bound; the fourth in line waits 0.75 s for its turn.
    Queue time is not hang time: all four succeed, one at a time, and the Client stays healthy."""
    monkeypatch.setattr(psexec_clients, "CALL_GRACE", 0.3)

    def slow(c, call):
        if not _is_sweep(call):
            time.sleep(0.25)
        return b"ok", b"", 0
    fake.handler = slow
    cells = [PsexecTransport(node(f"cell{i}")) for i in range(4)]
    cells[0].run(["cmd.exe", "/c", "ver"], timeout=5)  # the Client is opened and swept before the race
    results, errors = [], []

    def one(t):
        try:
            results.append(t.run(["cmd.exe", "/c", "ver"], timeout=0.1).stdout)
        except NodeError as exc:
            errors.append(str(exc))
    threads = [threading.Thread(target=one, args=(t,)) for t in cells]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == [] and results == ["ok"] * 4
    (client,) = FakePsexecClient.created
    assert client.max_parallel_runs == 1  # PAExec's per-Client pipes never shared
    assert psexec_clients._BROKEN == {} and not any(s.broken for s in psexec.shared_clients().values())
    for t in cells:
        t.close()
    assert client.names()[-2:] == ["remove_service", "disconnect"]


def test_one_stalled_host_does_not_delay_another_and_is_cut_at_its_bound(fake, monkeypatch):
    """smbprotocol's session setup waits without a timeout (see FakeConnection); the open is bounded by
    timeouts.psexec_open(C) and its sockets are closed, while another host's calls go on meanwhile."""
    from harness import timeouts

    # raising=False: this test also ran on the code before the fix, which had no such knob
    monkeypatch.setattr(timeouts, "PSEXEC_SERVICE_SETUP", 0.5, raising=False)
    stalled_host = "stalled.fake.invalid"
    FakePsexecClient.stalled = {stalled_host}
    stalled = PsexecTransport(node("stuck", host=stalled_host, connect_timeout=0.25))  # bound: 4 * 0.25 + 0.5
    healthy = PsexecTransport(node("fine", host="win-b.fake.invalid"))
    outcome = {}

    def stuck():
        start = time.monotonic()
        try:
            stalled.run(["cmd.exe"], timeout=5)
        except NodeError as exc:
            outcome["error"] = str(exc)
        outcome["seconds"] = time.monotonic() - start
    thread = threading.Thread(target=stuck)
    try:
        thread.start()
        time.sleep(0.2)  # the stalled open is under way
        start = time.monotonic()
        assert healthy.run(["cmd.exe", "/c", "ver"], timeout=5).stdout == "ok\n"
        assert time.monotonic() - start < 1.0 and thread.is_alive()
        thread.join(10)
    finally:
        FakePsexecClient.stalled = set()
    assert outcome["error"] == (f"node stuck: psexec to {stalled_host}:445: no answer within 1.5s "
                                "during connect and SMB session setup")
    assert outcome["seconds"] < 5
    stuck_client = next(c for c in FakePsexecClient.created if c.server == stalled_host)
    assert stuck_client.connection.disconnects == [False]  # its socket closed, nothing sent
    # the aborted open gave up at once, so the host is usable again with a new Client
    assert stalled.run(["cmd.exe"], timeout=5).stdout == "ok\n"
    assert [c.server for c in FakePsexecClient.created].count(stalled_host) == 2
    stalled.close()
    healthy.close()


def test_a_broken_client_is_released_once_and_retired_once(fake, monkeypatch):
    monkeypatch.setattr(psexec_clients, "CALL_GRACE", 0.2)
    release = threading.Event()
    fake.handler = hanging_until(release)
    t = PsexecTransport(node())
    with pytest.raises(CommandTimeout):
        t.run(["cmd.exe"], timeout=0.1)
    (hung,) = psexec.shared_clients().values()
    for _ in range(3):  # each later call fails at once; none releases the hung Client again
        with pytest.raises(NodeError, match="hung"):
            t.run(["cmd.exe"], timeout=1)
    assert hung.users == 0
    retiring = [th for th in threading.enumerate() if "retire" in th.name]
    assert len(retiring) == 1  # one background retirement, not one per call
    fake.handler = lambda c, call: (b"fine", b"", 0)
    release.set()
    assert hung.retired.wait(30)
    assert t.run(["cmd.exe"], timeout=1).stdout == "fine"
    first, second = FakePsexecClient.created
    assert first.names().count("remove_service") == 1
    scm = FakeServiceManager.of(HOST)
    assert scm.log == [("create", first.service_name), ("delete", first.service_name),
                       ("create", second.service_name)]
    assert scm.services == {first.service_name: second}  # the fresh Client's service was not deleted under it
    t.close()
    assert scm.services == {}


def test_the_run_folder_is_removed_from_the_node_when_the_last_transport_closes(fake):
    a, b = PsexecTransport(node("a")), PsexecTransport(node("b"))
    probe = a.probe_command()[-1]
    assert b.probe_command()[-1] == probe
    folder = admin_share_path(HOST, psexec.DEFAULT_WORKDIR)
    assert fake.share.exists(admin_share_path(HOST, probe))
    a.close()
    assert fake.share.removed_trees == [] and fake.share.exists(admin_share_path(HOST, probe))  # b still uses it
    b.close()
    assert fake.share.removed_trees == [folder]
    assert not any(k.startswith(folder.lower()) for k in fake.share.files)
    (client,) = FakePsexecClient.created
    assert client.names()[-2:] == ["remove_service", "disconnect"]


def test_the_transport_logs_at_debug_what_it_runs(fake, caplog):
    caplog.set_level(logging.DEBUG, logger="harness.transports.psexec")
    t = PsexecTransport(node())
    t.run(["C:\\Program Files\\x.exe", "a b"], timeout=3)
    t.spawn(["py", "-3", "probe.py", "serve"])
    t.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert 'psexec win-a: run "C:\\Program Files\\x.exe" "a b" (timeout 3s)' in lines
    assert any(line.startswith("psexec win-a: spawn py -3 probe.py serve (wrapper powershell.exe") for line in lines)
    assert SECRET not in caplog.text


def test_transports_that_open_one_host_at_once_share_one_client(fake):
    """The Client is opened outside the registry lock: the others wait for that one open, never
    start a second Client (its create_service would delete the first one's PAExec service)."""
    FakePsexecClient.connect_seconds = 0.3
    cells = [PsexecTransport(node(f"cell{i}")) for i in range(4)]
    outputs = []
    threads = [threading.Thread(target=lambda t=t: outputs.append(t.run(["cmd.exe"], timeout=5).stdout))
               for t in cells]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert outputs == ["ok\n"] * 4
    (client,) = FakePsexecClient.created
    assert client.names()[:3] == ["__init__", "connect", "create_service"]
    assert FakeServiceManager.of(HOST).deleted_while_busy == []
    for t in cells:
        t.close()
    assert client.names()[-2:] == ["remove_service", "disconnect"] and psexec.shared_clients() == {}


def test_a_failed_open_is_one_line_for_every_waiting_transport_and_leaves_nothing(fake, monkeypatch):
    def refuse(server, user, pw, port, enc):
        time.sleep(0.2)
        raise ConnectionRefusedError(111, "Connection refused")
    monkeypatch.setattr(psexec_clients, "client_factory", refuse)
    errors = []

    def one(name):
        try:
            PsexecTransport(node(name)).run(["cmd.exe"], timeout=5)
        except NodeError as exc:
            errors.append(exc.message)
    threads = [threading.Thread(target=one, args=(f"n{i}",)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    refused = f"psexec connect to {HOST}:445 failed: ConnectionRefusedError: [Errno 111] Connection refused"
    assert errors == [refused] * 3
    assert psexec.shared_clients() == {} and psexec_clients._BROKEN == {}


def test_a_program_paexec_kills_at_its_timeout_is_a_command_timeout(fake):
    """PAExec terminates a program that outlives timeout_seconds with exit code (DWORD)-10: the transport
    says CommandTimeout with the output so far, as the other transports do, not 'rc=4294967286'."""
    def slow(c, call):
        if _is_sweep(call):
            return b"", b"", 0
        time.sleep(1.2)
        return b"partial\r\n", b"", 0
    fake.handler = slow
    t = PsexecTransport(node())
    with pytest.raises(CommandTimeout, match=r"killed by PAExec at its timeout \(1s\)") as err:
        t.run(["ConsoleApp1.exe", "/client", "parent"], timeout=1)
    assert err.value.stdout == "partial\n"
    assert not any(s.broken for s in psexec.shared_clients().values())  # PAExec answered: the Client is fine
    t.close()


def test_a_failed_smb_files_session_removes_the_service_it_left(fake, monkeypatch):
    def no_share(server, user, pw, port, timeout):
        raise PermissionError(13, "STATUS_ACCESS_DENIED on C$")
    monkeypatch.setattr(psexec_clients, "files_factory", no_share)
    with pytest.raises(NodeError) as err:
        PsexecTransport(node()).run(["cmd.exe"], timeout=5)
    assert err.value.message == (f"the SMB files session to {HOST}:445 failed: "
                                 "PermissionError: [Errno 13] STATUS_ACCESS_DENIED on C$")
    (client,) = FakePsexecClient.created
    assert client.names()[-2:] == ["remove_service", "disconnect"] and FakeServiceManager.of(HOST).services == {}
    assert psexec.shared_clients() == {} and psexec_clients._BROKEN == {}
