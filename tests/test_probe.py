"""The probe (harness/probe/, shipped as one zipapp) for real on this machine: tcp on 127.0.0.1 only, and the AF_VSOCK refusal.

The probe runs as a subprocess exactly as on a node (JSON lines on stdout), with this
controller's Python and, when pyenv has one, a Python 3.8 -- the oldest the probe promises.
"""
from __future__ import annotations

import ast
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.probe import bundle, cli, client, common, protocol, sockets
from harness.probe import facts as probe_facts
from harness.probe import session as probe_session

PROBE = str(bundle.probe_file())  # the zipapp, exactly the file nodes get
PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
PYTHONS = [sys.executable] + ([str(PY38)] if PY38.exists() else [])
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != common.LAB_ENV}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_probe(*args: str, python: str = sys.executable, timeout: float = 30) -> tuple[int, list[dict]]:
    proc = subprocess.run([python, PROBE, *args], capture_output=True, timeout=timeout, env=CLEAN_ENV)
    return proc.returncode, [json.loads(line) for line in proc.stdout.decode().splitlines()]


def start_serve(*args: str, python: str = sys.executable) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([python, PROBE, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=CLEAN_ENV)
    first = json.loads(proc.stdout.readline())
    return proc, first


class SessionProc:
    """A real `probe.py session` subprocess driven with JSON lines."""

    def __init__(self, *args: str, python: str = sys.executable):
        self.proc = subprocess.Popen([python, PROBE, "session", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV, text=True)
        self.ready = self.read()

    def send(self, obj) -> None:
        self.proc.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"session ended: {self.proc.stderr.read()}"
        return json.loads(line)

    def read_until(self, pred, limit: int = 20) -> dict:
        for _ in range(limit):
            msg = self.read()
            if pred(msg):
                return msg
        raise AssertionError("expected message never came")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


# -- the file itself --------------------------------------------------------------------------
@pytest.mark.parametrize("module", bundle.sources(), ids=lambda p: p.name)
def test_probe_parses_as_python_3_8_and_imports_only_the_standard_library(module):
    tree = ast.parse(module.read_text(), feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:  # relative: the package itself
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_the_zipapp_is_the_same_bytes_every_build_and_holds_every_module():
    import zipfile

    first, second = bundle.build(), bundle.build()
    assert first == second and Path(PROBE).read_bytes() == first
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names[0] == "__main__.py"
    assert sorted(names[1:]) == sorted(f"{bundle.PACKAGE}/{p.name}" for p in bundle.sources())
    assert f"{bundle.PACKAGE}/bundle.py" not in names  # the builder stays on the controller


@pytest.mark.parametrize("python", PYTHONS)
def test_the_zipapp_runs_from_a_folder_without_the_checkout(python, tmp_path):
    """What a node has: one file, no harness package, any Python >= 3.8."""
    copy = tmp_path / "probe.pyz"
    copy.write_bytes(bundle.probe_bytes())
    proc = subprocess.run([python, str(copy), "info"], capture_output=True, timeout=60,
                          env=dict(CLEAN_ENV, PYTHONPATH=""), cwd=tmp_path)
    facts = json.loads(proc.stdout.decode().splitlines()[-1])
    assert (proc.returncode, facts["event"], facts["python"][:1]) == (0, "info", "3"), proc.stderr


def test_errno_names_cover_posix_and_windows_sockets():
    assert common.errno_name(111) == "ECONNREFUSED"
    assert common.errno_name(99) == "EADDRNOTAVAIL"
    assert common.errno_name(10061) == "WSAECONNREFUSED"
    assert common.errno_name(10060) == "WSAETIMEDOUT"
    assert common.errno_name(None) is None
    assert common.errno_name(987654) == "ERRNO_987654"


def test_vsock_connect_timeout_is_a_timeval_and_hyperv_one_is_u32_milliseconds(monkeypatch):
    calls = []

    class Recorder:
        def fileno(self):
            return 99

        def setsockopt(self, level, opt, value):
            calls.append(("py", level, opt, value))

    # vsock goes through libc: CPython's setsockopt on AF_VSOCK only passes an 8-byte integer
    monkeypatch.setattr(sockets, "libc_setsockopt", lambda fd, level, opt, data: calls.append(("libc", fd, level, opt, data)))
    sockets.set_connect_timeout(Recorder(), "vsock", 2.5)
    sockets.set_connect_timeout(Recorder(), "hyperv", 2.5)
    import struct
    assert calls[0] == ("libc", 99, 40, 6, struct.pack("ll", 2, 500000))
    assert len(calls[0][4]) == 16  # struct timeval on 64-bit Linux
    assert calls[1] == ("py", 1, 1, struct.pack("<I", 2500))


def test_libc_setsockopt_really_sets_a_buffer_option():
    import struct
    with socket.socket() as s:
        sockets.libc_setsockopt(s.fileno(), socket.SOL_SOCKET, socket.SO_RCVBUF, struct.pack("i", 65536))
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 65536
        with pytest.raises(OSError):
            sockets.libc_setsockopt(s.fileno(), socket.SOL_SOCKET, 0x7FFF, b"x")


# -- serve / connect, one-shot --------------------------------------------------------------------
@pytest.mark.parametrize("python", PYTHONS)
def test_serve_and_connect_give_a_real_O_with_the_exact_echo(python):
    server, listening = start_serve("--family", "tcp", "--addr", "127.0.0.1", "--port", "0", "--count", "1",
                                    "--timeout", "20", python=python)
    try:
        assert listening["event"] == "listening" and listening["port"] > 0
        rc, out = run_probe("connect", "--family", "tcp", "--addr", "127.0.0.1", "--port", str(listening["port"]),
                            "--payload", "World!", python=python)
        assert rc == 0
        assert out[-1]["outcome"] == "O"
        assert out[-1]["reply"] == "Hello: World!"
        assert out[-1]["elapsed_ms"] >= 0
        rest = [json.loads(line) for line in server.communicate(timeout=20)[0].decode().splitlines()]
        assert server.returncode == 0  # exited by itself after --count 1
        assert [m["event"] for m in rest] == ["accepted", "done"]
        assert rest[0]["received"] == "World!"
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("python", PYTHONS)
def test_connect_to_a_closed_port_is_X_econnrefused(python):
    rc, out = run_probe("connect", "--family", "tcp", "--addr", "127.0.0.1", "--port", str(free_port()),
                        "--payload", "x", "--timeout", "5", python=python)
    assert rc == 1
    result = out[-1]
    assert (result["outcome"], result["phase"], result["errno_name"], result["errno"]) == \
        ("X", "connect", "ECONNREFUSED", 111)
    assert result["elapsed_ms"] < 5000


def test_serve_exits_after_its_timeout_even_without_a_client():
    start = time.monotonic()
    rc, out = run_probe("serve", "--family", "tcp", "--addr", "127.0.0.1", "--port", "0", "--timeout", "1")
    assert rc == 0 and out[0]["event"] == "listening" and out[-1] == {"event": "done", "accepted": 0, "peers": []}
    assert time.monotonic() - start < 10


def test_bind_to_an_address_not_on_this_machine_is_bind_failed_with_errno():
    rc, out = run_probe("serve", "--family", "tcp", "--addr", "192.0.2.77", "--port", "19000", "--timeout", "1")
    assert rc == 1
    assert out[0]["event"] == "bind_failed" and out[0]["errno_name"] == "EADDRNOTAVAIL"


def test_bind_to_a_port_in_use_is_bind_failed_eaddrinuse():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        rc, out = run_probe("serve", "--family", "tcp", "--addr", "127.0.0.1", "--port",
                            str(held.getsockname()[1]), "--timeout", "1")
    assert rc == 1 and out[0]["errno_name"] == "EADDRINUSE"


def _one_shot_server(reply: bytes | None):
    """A tcp server on 127.0.0.1 that answers `reply` (or nothing, holding the connection)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    done = threading.Event()

    def serve():
        conn, _ = srv.accept()
        conn.recv(1024)
        if reply is not None:
            conn.sendall(reply)
            conn.close()
        else:
            done.wait(30)
            conn.close()
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1], done


def test_connected_but_wrong_reply_is_E_never_O_or_X():
    port, _ = _one_shot_server(b"Goodbye")
    _rc, out = run_probe("connect", "--family", "tcp", "--addr", "127.0.0.1", "--port", str(port), "--payload", "x")
    assert out[-1]["outcome"] == "E" and out[-1]["phase"] == "reply" and out[-1]["reply"] == "Goodbye"


def test_a_silent_server_cuts_the_client_at_its_timeout_as_E():
    port, release = _one_shot_server(None)
    start = time.monotonic()
    try:
        _rc, out = run_probe("connect", "--family", "tcp", "--addr", "127.0.0.1", "--port", str(port),
                            "--payload", "x", "--timeout", "1.5")
    finally:
        release.set()
    assert time.monotonic() - start < 10
    assert out[-1]["outcome"] == "E" and out[-1]["phase"] == "reply"
    assert out[-1]["errno_name"] == "ETIMEDOUT"


# -- session mode -----------------------------------------------------------------------------
@pytest.mark.parametrize("python", PYTHONS)
def test_session_serves_listen_connect_and_stop_concurrently(python):
    s = SessionProc("--idle-timeout", "60", python=python)
    try:
        assert s.ready["event"] == "ready"
        s.send({"id": 1, "op": "listen", "family": "tcp", "addr": "127.0.0.1", "port": 0, "service": None,
                "count": 1, "timeout": 30})
        listening = s.read()
        assert listening["id"] == 1 and listening["event"] == "listening"
        s.send({"id": 2, "op": "connect", "family": "tcp", "addr": "127.0.0.1", "port": listening["port"],
                "payload": "World!", "timeout": 5, "connect_timeout": 5})
        result = s.read_until(lambda m: m.get("id") == 2)
        assert result["outcome"] == "O" and result["reply"] == "Hello: World!"
        s.send({"id": 3, "op": "stop", "listener": listening["listener"]})
        stopped = s.read_until(lambda m: m.get("id") == 3)
        assert stopped["event"] == "stopped" and stopped["accepted"] == 1
        s.send({"id": 4, "op": "connect", "family": "tcp", "addr": "127.0.0.1", "port": listening["port"],
                "payload": "x", "timeout": 5})
        again = s.read_until(lambda m: m.get("id") == 4)
        assert (again["outcome"], again["errno_name"]) == ("X", "ECONNREFUSED")  # stop really closed it
        s.send({"id": 5, "op": "info"})
        info = s.read_until(lambda m: m.get("id") == 5)
        assert info["event"] == "info" and info["lab_node"] is False and info["local_cid"] is None
        s.send({"id": 6, "op": "bye"})
        assert s.read_until(lambda m: m.get("id") == 6)["event"] == "bye"
        assert s.proc.wait(10) == 0
    finally:
        s.close()


def test_session_answers_malformed_and_unknown_requests_with_error():
    s = SessionProc()
    try:
        s.send("this is not json")
        assert s.read()["event"] == "error"
        s.send({"id": 7, "op": "teleport"})
        msg = s.read()
        assert msg["id"] == 7 and msg["event"] == "error" and "teleport" in msg["message"]
        s.send({"id": 8, "op": "stop", "listener": "L99"})
        assert s.read()["event"] == "error"
    finally:
        s.close()


def test_session_closes_its_listeners_on_eof():
    s = SessionProc()
    try:
        s.send({"id": 1, "op": "listen", "family": "tcp", "addr": "127.0.0.1", "port": 0, "count": 5, "timeout": 60})
        port = s.read()["port"]
        s.proc.stdin.close()
        assert s.proc.wait(10) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        s.close()


def test_session_exits_after_its_idle_timeout():
    s = SessionProc("--idle-timeout", "1")
    try:
        start = time.monotonic()
        msg = s.read()
        assert msg["event"] == "idle_timeout"
        assert s.proc.wait(10) == 0
        assert time.monotonic() - start < 10
    finally:
        s.close()


# -- safety: AF_VSOCK refused on this machine -----------------------------------------------
def test_this_machine_is_not_a_lab_node():
    assert not os.path.exists(common.LAB_MARKER), "this controller must not carry the lab-guest marker"
    assert os.environ.get(common.LAB_ENV) != "1"


@pytest.mark.parametrize("command", [
    ["connect", "--family", "vsock", "--addr", "1", "--port", "19000", "--payload", "x"],
    ["serve", "--family", "vsock", "--addr", "4294967295", "--port", "19000", "--timeout", "1"],
])
def test_vsock_without_lab_node_is_refused_with_exit_3(command):
    rc, out = run_probe(*command)
    assert rc == common.EXIT_REFUSED
    assert out == [{"event": "refused", "message": out[0]["message"]}]
    assert "not a lab node" in out[0]["message"]


@pytest.fixture
def socket_spy(monkeypatch):
    """Records the family of every socket the probe creates in-process (and creates tcp ones for real)."""
    created = []
    real = socket.socket

    def spy(family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0, fileno=None):
        created.append(family)
        if family == sockets.AF_VSOCK:
            raise AssertionError("AF_VSOCK socket created on the controller")
        return real(family, type, proto, fileno)

    monkeypatch.delenv(common.LAB_ENV, raising=False)
    monkeypatch.setattr(sockets.socket, "socket", spy)
    return created


def test_refusal_happens_before_any_vsock_socket_exists(socket_spy, capsys):
    assert cli.main(["connect", "--family", "vsock", "--addr", "2", "--port", "19000", "--payload", "x"]) == 3
    assert cli.main(["serve", "--family", "vsock", "--addr", "4294967295", "--port", "19000"]) == 3
    assert sockets.AF_VSOCK not in socket_spy
    events = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert events == ["refused", "refused"]
    # and the spy is live: a tcp probe does go through it
    client.connect_once("tcp", "127.0.0.1", free_port(), payload="x", timeout=2)
    assert socket_spy and set(socket_spy) == {socket.AF_INET}


def test_session_refuses_vsock_requests_but_keeps_serving(socket_spy):
    import io
    out = io.StringIO()
    session = probe_session.Session(out, idle_timeout=60, lab_node=False)
    for req in ({"id": 1, "op": "listen", "family": "vsock", "addr": "4294967295", "port": 1},
                {"id": 2, "op": "connect", "family": "vsock", "addr": "1", "port": 1, "payload": "x"}):
        session.run_request(req)
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(a["id"], a["event"]) for a in answers] == [(1, "refused"), (2, "refused")]
    assert sockets.AF_VSOCK not in socket_spy


def test_info_skips_the_dev_vsock_ioctl_off_lab(monkeypatch):
    monkeypatch.delenv(common.LAB_ENV, raising=False)
    monkeypatch.setattr(probe_facts, "local_cid", lambda: pytest.fail("ioctl on /dev/vsock off a lab node"))
    facts = probe_facts.info_facts(lab_node=False)
    assert facts["local_cid"] is None and facts["lab_node"] is False
    for key in ("hostname", "os", "kernel", "python", "dev_vsock", "vsock_modules", "socat_version", "vm_id"):
        assert key in facts
    if facts["dev_vsock"]:
        assert facts["refused"] == ["/dev/vsock ioctl: not a lab node"]


def test_lab_node_permission_sources(monkeypatch):
    monkeypatch.delenv(common.LAB_ENV, raising=False)
    assert common.lab_allowed(False) is False
    assert common.lab_allowed(True) is True
    monkeypatch.setenv(common.LAB_ENV, "1")
    assert common.lab_allowed(False) is True


def test_session_arguments_parse_without_argparse():
    args = cli.parse_session_args(["session", "--idle-timeout", "12", "--lab-node"])
    assert (args.command, args.idle_timeout, args.lab_node) == ("session", 12.0, True)
    assert cli.parse_session_args(["session"]).lab_node is False
    assert cli.parse_session_args(["session", "--what"]) is None  # argparse reports it
    assert cli.parse_session_args(["connect"]) is None


def test_resident_session_starts_with_few_modules():
    """On nested guests every import is read over 9p; the session needs no argparse/subprocess/platform."""
    proc = subprocess.run([sys.executable, "-X", "importtime", PROBE, "session"], input=b'{"id":1,"op":"bye"}\n',
                          capture_output=True, timeout=30, env=CLEAN_ENV)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if "|" in line}
    assert not {"argparse", "subprocess", "platform", "uuid"} & imported


def test_session_listeners_release_their_descriptors():
    s = SessionProc()
    try:
        def fds() -> int:
            return len(os.listdir(f"/proc/{s.proc.pid}/fd"))
        for i in range(1, 31):
            s.send({"id": i, "op": "listen", "family": "tcp", "addr": "127.0.0.1", "port": 0, "count": 1, "timeout": 30})
            listening = s.read_until(lambda m, i=i: m.get("id") == i)
            if i == 1:
                baseline = fds()
            s.send({"id": 1000 + i, "op": "stop", "listener": listening["listener"]})
            assert s.read_until(lambda m, i=i: m.get("id") == 1000 + i)["event"] == "stopped"
        assert fds() <= baseline  # no socket or wake pipe left per listener
    finally:
        s.close()


def test_the_protocol_is_defined_once_and_the_agents_use_it():
    """harness/agents/session.py builds and reads lines with the probe's own definition."""
    from harness.agents import session as agents

    assert agents.request_line is protocol.request_line and agents.parse_line is protocol.parse_line
    line = protocol.request_line(7, "connect", family="tcp", addr="127.0.0.1", port=1, service=None, payload="x",
                              timeout=1.0, connect_timeout=1.0)
    assert protocol.request_problem(protocol.parse_line(line)) is None
    with pytest.raises(ValueError, match="listen takes no payload"):
        protocol.request_line(1, "listen", family="tcp", addr="0.0.0.0", port=1, payload="x")
    with pytest.raises(ValueError, match="stop needs listener"):
        protocol.request_line(1, "stop")
    assert protocol.parse_line("Welcome to the lab") is None and protocol.parse_line('{"id": 1') is None
    assert set(protocol.ANSWER_EVENTS) == set(protocol.REQUEST_FIELDS)


def test_a_session_answers_a_request_outside_the_protocol_with_an_error():
    out = io.StringIO()
    session = probe_session.Session(out)
    session.run_request({"id": 3, "op": "listen", "family": "tcp", "addr": "127.0.0.1"})
    session.run_request({"id": 4, "op": "launch"})
    answers = [protocol.parse_line(line) for line in out.getvalue().splitlines()]
    assert answers == [{"id": 3, "event": "error", "message": "listen needs port"},
                       {"id": 4, "event": "error", "message": "unknown op 'launch'"}]


# -- ending a one-shot server without a kill ------------------------------------------------------------
def test_serve_stops_on_stdin_eof_and_says_done():
    """`serve --stop-on-eof`: closing its stdin (the SSH channel's EOF) ends it, with its count of clients."""
    proc = subprocess.Popen([sys.executable, PROBE, "serve", "--family", "tcp", "--addr", "127.0.0.1", "--port", "0",
                             "--count", "0", "--timeout", "60", "--stop-on-eof"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV)
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "listening"
    start = time.monotonic()
    proc.stdin.close()
    assert proc.wait(10) == 0 and time.monotonic() - start < 5
    assert json.loads(proc.stdout.read().decode().splitlines()[-1])["event"] == "done"


def test_serve_stops_when_its_stop_file_appears(tmp_path):
    """`serve --stop-file F`: the controller writes F over SMB where it holds no stdin (psexec)."""
    stop = tmp_path / "stop-P1"
    proc = subprocess.Popen([sys.executable, PROBE, "serve", "--family", "tcp", "--addr", "127.0.0.1", "--port", "0",
                             "--count", "0", "--timeout", "60", "--stop-file", str(stop)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CLEAN_ENV)
    assert json.loads(proc.stdout.readline())["event"] == "listening"
    time.sleep(0.5)
    assert proc.poll() is None  # stdin at EOF from the start (DEVNULL) does not stop it
    stop.write_bytes(b"stop\n")
    assert proc.wait(10) == 0
    assert json.loads(proc.stdout.read().decode().splitlines()[-1])["event"] == "done"


def test_services_off_windows_is_one_error_line():
    rc, out = run_probe("services", "list")
    assert rc == 1 and out == [{"event": "error", "message": out[0]["message"]}]
    assert "no Windows registry" in out[0]["message"]


def test_payload_hex_carries_any_text_through_a_command_line():
    port = free_port()
    proc, _first = start_serve("--family", "tcp", "--addr", "127.0.0.1", "--port", str(port), "--timeout", "20")
    try:
        text = 'a "quoted" 50% & <é> $HOME!'
        rc, out = run_probe("connect", "--family", "tcp", "--addr", "127.0.0.1", "--port", str(port),
                            "--payload-hex", text.encode().hex(), "--timeout", "5")
        assert (rc, out[-1]["reply"]) == (0, "Hello: " + text)
    finally:
        proc.wait(10)
