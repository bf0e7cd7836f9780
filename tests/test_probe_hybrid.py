"""The probe's hybrid family against a fake vhost-device-vsock (tests/fakes/fake_hybrid_backend.py):
the CONNECT protocol, what each refusal records, <uds>_<port> listeners, and the safety fence.

The fake mirrors the backend's host-facing half and stands in for the guest: this proves the probe's
plumbing and its classification, never an outcome of the real matrix (tests/test_lab_hybrid_boot.py).
"""
from __future__ import annotations

import errno
import os
import socket

import pytest

from harness.probe import common, hybrid_paths
from harness.probe.client import connect_once
from harness.probe.common import Refused
from harness.probe.hybrid import make_listener
from tests.fakes.fake_hybrid_backend import FakeBackend


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(hybrid_paths, "HYBRID_RUN_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def backend(run_dir):
    fake = FakeBackend(str(run_dir / "vm31.vsock"))
    yield fake
    fake.close()


def _connect(uds, port, **kw):
    return connect_once("hybrid", uds, port, payload="World!", timeout=kw.pop("timeout", 5.0),
                        connect_timeout=kw.pop("connect_timeout", 3.0), lab_node=True, **kw)


def test_connect_through_the_uds_reaches_the_guest_port(backend):
    backend.guest_ports[1234] = "Hello: "
    res = _connect(backend.uds, 1234)
    assert (res["outcome"], res["reply"]) == ("O", "Hello: World!")
    assert backend.requests == [b"CONNECT 1234\n"]  # exactly the protocol line, nothing of the payload before OK


def test_a_guest_that_refuses_is_x_with_the_empty_answer(backend):
    res = _connect(backend.uds, 4321)  # no guest listener: the backend drops the stream
    assert (res["outcome"], res["phase"], res["errno_name"]) == ("X", "connect", "ECONNRESET")
    assert res["answer"] == "" and "without answering CONNECT 4321" in res["message"]


def test_a_device_without_a_guest_closes_at_once_and_that_is_x_not_a_crash(run_dir):
    fake = FakeBackend(str(run_dir / "vm39.vsock"), ready=False)
    try:
        res = _connect(fake.uds, 1234)
    finally:
        fake.close()
    # the close races the CONNECT line: the send fails (EPIPE) or the answer never comes (EOF)
    assert (res["outcome"], res["phase"]) == ("X", "connect") and res["errno_name"] in ("EPIPE", "ECONNRESET")
    assert res["answer"] == ""


def test_another_answer_is_x_eproto_with_the_answer(run_dir):
    path = str(run_dir / "odd.vsock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    import threading

    def answer():
        conn, _ = srv.accept()
        conn.recv(64)
        conn.sendall(b"ERR no such port\n")
        conn.close()

    t = threading.Thread(target=answer)
    t.start()
    res = _connect(path, 5)
    t.join()
    srv.close()
    assert (res["outcome"], res["errno_name"], res["answer"]) == ("X", "EPROTO", "ERR no such port\n")


def test_no_backend_keeps_the_connect_errno(run_dir):
    res = _connect(str(run_dir / "absent.vsock"), 1234)
    assert (res["outcome"], res["phase"], res["errno_name"]) == ("X", "connect", "ENOENT")


def test_a_seqpacket_client_gets_the_kernels_answer_to_a_stream_uds(backend):
    backend.guest_ports[1234] = "Hello: "
    res = _connect(backend.uds, 1234, kind="seqpacket")
    assert (res["outcome"], res["phase"], res["errno"]) == ("X", "connect", errno.EPROTOTYPE)


def test_a_listener_on_every_guest_path_answers_the_guest_and_cleans_up(run_dir):
    a, b = FakeBackend(str(run_dir / "vm31.vsock")), FakeBackend(str(run_dir / "vm32.vsock"))
    events = []
    try:
        lst = make_listener("hybrid", f"{a.uds},{b.uds}", 7000, count=2, timeout=10.0, lab_node=True,
                            emit=events.append)
        opened = lst.open()
        assert opened["event"] == "listening" and opened["paths"] == [a.uds + "_7000", b.uds + "_7000"]
        lst.start()
        assert a.guest_connects(7000, b"from 31") == b"Hello: from 31"
        assert b.guest_connects(7000, b"from 32") == b"Hello: from 32"
        stopped = lst.stop()
        assert stopped["accepted"] == 2 and stopped["peers"] == ["vm31.vsock_7000", "vm32.vsock_7000"]
        assert not os.path.exists(a.uds + "_7000") and not os.path.exists(b.uds + "_7000")
        assert a.guest_connects(7001, b"x") == "timeout"  # nobody on that port: the guest would time out
    finally:
        a.close()
        b.close()


def test_a_path_that_exists_is_a_bind_failure_and_is_left_alone(run_dir):
    taken = run_dir / "vm31.vsock_7000"
    taken.write_text("not ours")
    lst = make_listener("hybrid", str(run_dir / "vm31.vsock"), 7000, count=1, timeout=2.0, lab_node=True)
    ev = lst.open()
    assert (ev["event"], ev["phase"], ev["errno_name"]) == ("bind_failed", "bind", "EADDRINUSE")
    assert taken.read_text() == "not ours"


@pytest.mark.parametrize("path", ["/tmp/elsewhere.vsock", "/run/hvlab/hybrid/../x.vsock",
                                  "/run/hvlab/hybrid/vm31.vsock,/tmp/x.vsock"])
def test_paths_outside_the_lab_run_folder_are_refused(path, monkeypatch):
    monkeypatch.setattr(hybrid_paths, "HYBRID_RUN_DIR", "/run/hvlab/hybrid")
    with pytest.raises(Refused, match="outside the lab's hybrid run folder"):
        _connect(path, 1)
    with pytest.raises(Refused):
        make_listener("hybrid", path, 1, lab_node=True).open()


def test_a_relative_path_is_a_harness_error_not_a_measurement(run_dir):
    res = _connect("relative.vsock", 1)
    assert res["outcome"] == "E" and "not an absolute path" in res["message"]


def test_off_a_lab_node_nothing_is_opened(backend, monkeypatch):
    monkeypatch.delenv("HVSOCK_MATRIX_LAB_NODE", raising=False)
    monkeypatch.setattr(common, "LAB_MARKER", str(backend.uds) + ".no-marker")  # no lab-guest marker here
    with pytest.raises(Refused):
        connect_once("hybrid", backend.uds, 1234, lab_node=False)
    assert backend.requests == []
