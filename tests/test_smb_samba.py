"""The psexec transport's SMB side against a REAL Samba (smbd) on a non-default port, in its own netns.

Real: smbprotocol/smbclient and pypsexec talking to smbd (tests/samba_server.py): connect,
authenticate, upload the probe, read a background process's output file as it grows, remove files,
a wrong password, a missing share, and pypsexec asking Samba's svcctl to create the PAExec service.
Not real: PAExec itself (Samba runs no Windows services), so the spawned process's output file is
written on the server's disk by the test, the way the wrapper would write it on Windows.
"""
from __future__ import annotations

import os
import re

import pytest

from harness.errors import NodeError
from harness.node import Access, Node
from harness.probe import bundle
from harness.transports import psexec
from harness.transports.psexec import PsexecProcess, PsexecTransport, SmbFiles
from harness.transports.psexec import clients as psexec_clients
from tests import samba_server

pytestmark = pytest.mark.skipif(samba_server.skip_reason() is not None,
                                reason=samba_server.skip_reason() or "")

PASSWORD_ENV = "HVSOCK_SAMBA_TEST_PASSWORD"
WORKDIR = r"C:\Windows\Temp\hvsock-matrix"


@pytest.fixture(scope="module")
def samba():
    server = samba_server.SambaServer.start()
    try:
        yield server
    finally:
        server.down()
        assert server.pids() == [] and not server.dir.exists()


@pytest.fixture
def env(samba, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, samba.password)
    yield samba
    for shared in list(psexec.shared_clients().values()):
        psexec_clients.retire(shared, 30)
    psexec.shared_clients().clear()
    psexec_clients._BROKEN.clear()


def windows_node(samba, password_env=PASSWORD_ENV) -> Node:
    access = Access(kind="psexec", host=samba.address, port=samba_server.SMB_PORT, user=samba.user,
                    password_env=password_env, workdir=WORKDIR, connect_timeout=30)
    return Node("samba-win", "host", "windows", "hyperv", access, source="samba:1")


def transport_with_real_files(samba) -> PsexecTransport:
    """A psexec transport whose SMB half is smbclient against Samba (PAExec cannot exist there)."""
    node = windows_node(samba)
    transport = PsexecTransport(node)
    files = SmbFiles(samba.address, samba.user, samba.password, samba_server.SMB_PORT, 30)
    shared = psexec_clients.SharedClient(client=_NoPaexec(), files=files, key=transport._key)
    shared.swept = True  # its one user is the transport, which acquires it on first use  # no PAExec on Samba to sweep
    psexec.shared_clients()[transport._key] = shared
    return transport


class _NoPaexec:
    """Samba has no PAExec: the transport's file half is exercised alone (retire must still work)."""

    def remove_service(self):
        pass

    def disconnect(self):
        pass


def test_smbd_really_runs(samba):
    assert samba.smbd_running()
    assert samba_server.SMB_PORT != 445


def test_put_uploads_the_probe_through_c_share_on_the_node_port(env):
    transport = transport_with_real_files(env)
    try:
        *_python, remote = transport.probe_command()  # put, read back over SMB and compared
        assert remote.startswith(WORKDIR + "\\") and remote.endswith(r"\probe.pyz")
        assert env.local(remote).read_bytes() == bundle.probe_bytes()
        assert env.smbd_running()
    finally:
        transport.close()
    # the run's own folder went with the Client, over real smbclient (shutil.rmtree), its base stays
    run_dir = env.local(remote).parent
    assert not run_dir.exists() and run_dir.parent.exists()


def test_a_spawned_servers_output_is_read_back_as_it_grows_and_removed(env):
    transport = transport_with_real_files(env)
    base = WORKDIR + r"\spawn\0123456789abcdef"
    local = env.local(base + ".out").parent
    local.mkdir(parents=True, exist_ok=True)
    try:
        process = PsexecProcess(transport, base, wrapper_pid=4242)
        (local / "0123456789abcdef.pid").write_text("4244")
        with open(local / "0123456789abcdef.out", "wb", buffering=0) as out:  # the wrapper, still writing
            out.write(b'{"event": "listening"}\n')
            assert process.read_line(30) == '{"event": "listening"}'
            assert process.pid == 4244
            out.write(b'{"event": "accepted"}\n{"event": "done"')
            assert process.read_line(30) == '{"event": "accepted"}'
        (local / "0123456789abcdef.err").write_text("")
        (local / "0123456789abcdef.rc").write_text("0")
        assert process.read_line(30) == '{"event": "done"'
        assert process.read_line(30) is None  # EOF: files removed over SMB
        assert process.wait(1) == 0
        assert sorted(p.name for p in local.iterdir()) == []
    finally:
        transport.close()


def test_a_missing_share_is_one_line(env):
    transport = transport_with_real_files(env)
    try:
        with pytest.raises(NodeError) as err:
            transport.put(str(bundle.probe_file()), r"D:\nowhere\probe.pyz")  # no D$ share
    finally:
        transport.close()
    message = err.value.message
    assert "\n" not in message and message.startswith("SMB file access failed:")
    # Samba answers the tree connect with STATUS_NOT_FOUND (0xc0000225); Windows with STATUS_BAD_NETWORK_NAME
    assert "D$" in message and re.search(r"(?i)ntstatus 0xc0000(225|0cc)", message), message


def test_a_wrong_password_is_one_line_without_the_secret(env, monkeypatch):
    wrong = "Wrong-" + env.password[::-1]
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    transport = PsexecTransport(windows_node(env))  # real pypsexec Client
    try:
        with pytest.raises(NodeError) as err:
            transport.run(["cmd.exe", "/c", "ver"], timeout=30)
    finally:
        transport.close()
    message = err.value.message
    assert "\n" not in message and wrong not in message and env.password not in message
    assert message.startswith(f"psexec connect to {env.address}:{samba_server.SMB_PORT} failed:")
    with pytest.raises(Exception) as raw:
        SmbFiles(env.address, env.user, wrong, samba_server.SMB_PORT, 30)
    assert wrong not in str(raw.value)


def test_what_samba_answers_to_the_paexec_service_is_one_e_line(env, record_property):
    """pypsexec connects, authenticates and uploads PAExec-<pid>-<host>.exe to ADMIN$; Samba's svcctl
    has no CreateServiceW and answers with a DCE/RPC fault. The node fails with one line, and the
    uploaded exe is removed again."""
    transport = PsexecTransport(windows_node(env))
    try:
        with pytest.raises(NodeError) as err:
            transport.run(["cmd.exe", "/c", "ver"], timeout=30)
    finally:
        transport.close()
    message = err.value.message
    record_property("samba_paexec_answer", message)
    assert "\n" not in message and env.password not in message
    assert message.startswith(f"creating the PAExec service on {env.address}:{samba_server.SMB_PORT} failed:")
    assert re.search(r"DCE/RPC fault 0x[0-9a-f]{8}", message), message
    assert [p.name for p in (env.c_drive / "Windows").iterdir() if p.name.startswith("PAExec-")] == []
    assert env.smbd_running()


def test_a_stalled_smb_server_is_cut_at_the_file_call_bound_and_its_socket_closed(env, monkeypatch):
    """smbd frozen (SIGSTOP: our own processes in our netns) answers nothing; smbclient would wait on
    its keep-alive (~2 x 600 s). The file call gives up at PSEXEC_FILE_CALL and closes the socket,
    which really ends the blocked smbprotocol receive (Connection.disconnect(close=False))."""
    import signal
    import threading
    import time

    from harness import timeouts

    transport = transport_with_real_files(env)
    transport.probe_command()
    monkeypatch.setattr(timeouts, "PSEXEC_FILE_CALL", 1.0)
    frozen = env.pids()
    try:
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(NodeError, match=r"an SMB file call did not return within 1s"):
            transport.put(str(bundle.probe_file()), WORKDIR + r"\again.pyz")
        assert time.monotonic() - start < 5
        # smbd is still frozen: a call still blocked in smbprotocol would be alive here for minutes
        stuck = [t for t in threading.enumerate() if t.name == "smb-samba-win"]
        for thread in stuck:
            thread.join(10)
        assert not any(t.is_alive() for t in stuck)  # the closed socket ended smbprotocol's wait
        # no silent credential-less retry: either the stalled session refuses, or the pool opens a fresh
        # (credentialed) Client, whose connect to the still-frozen smbd fails in one line; never a success
        with pytest.raises(NodeError, match=r"hung|closed after it stalled|psexec connect to \S+ failed"):
            transport.put(str(bundle.probe_file()), WORKDIR + r"\again.pyz")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        transport.close()
    assert env.smbd_running()
