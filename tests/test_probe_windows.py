"""The probe's Windows paths against fake CPython socket modules (tests/fakes/fake_hvsocket.py).

Windows does not exist here: IS_WINDOWS is switched on and `socket` replaced by a fake that
mirrors what CPython 3.11 / 3.12 on Windows really do (cited in the fake).
"""
from __future__ import annotations

import io
import json
import struct
import sys
import types
import uuid

import pytest

from harness.probe import cli, client, common, sockets
from harness.probe import facts as probe_facts
from harness.probe import listener as probe_listener
from tests.fakes import fake_hvsocket

PARENT = fake_hvsocket.HV_GUIDS["HV_GUID_PARENT"]
LOOPBACK = fake_hvsocket.HV_GUIDS["HV_GUID_LOOPBACK"]
WILDCARD = fake_hvsocket.HV_GUIDS["HV_GUID_WILDCARD"]


def run_main(argv, capsys) -> tuple[int, list[dict]]:
    rc = cli.main(argv)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return rc, [json.loads(line) for line in lines]


@pytest.fixture
def windows(monkeypatch):
    monkeypatch.setattr(common, "IS_WINDOWS", True)
    return monkeypatch


def test_python_311_on_windows_refuses_serve_in_one_line(windows, capsys):
    """CPython 3.11 cannot accept() an AF_HYPERV socket: the probe must say so instead of `listening`."""
    windows.setattr(sockets, "socket", fake_hvsocket.cpython311_windows())
    rc, events = run_main(["serve", "--family", "hyperv", "--addr", WILDCARD, "--port", "19000",
                           "--timeout", "2"], capsys)
    assert rc == 2
    assert len(events) == 1 and events[0]["event"] == "error"
    assert "Python >= 3.12" in events[0]["message"]


@pytest.mark.parametrize("command", [
    ["connect", "--family", "tcp", "--addr", "127.0.0.1", "--port", "1", "--payload", "x"],
    ["session"],
])
def test_python_311_on_windows_refuses_every_socket_command(windows, capsys, command):
    windows.setattr(sockets, "socket", fake_hvsocket.cpython311_windows())
    rc, events = run_main(command, capsys)
    assert (rc, [e["event"] for e in events]) == (2, ["error"])


def test_python_311_on_windows_info_still_answers_with_the_problem(windows, capsys):
    windows.setattr(sockets, "socket", fake_hvsocket.cpython311_windows())
    rc, events = run_main(["info"], capsys)
    assert rc == 0
    assert events[0]["af_hyperv"] is False
    assert "3.12" in events[0]["python_problem"]


def test_python_312_on_windows_serves_and_connects(windows, capsys):
    """Bind and connect hand CPython (vm_id, service_id) strings; accept's peer comes back as strings."""
    winsock = fake_hvsocket.FakeWinsock()
    windows.setattr(sockets, "socket", fake_hvsocket.cpython312_windows(winsock))
    listener = probe_listener.Listener("hyperv", WILDCARD, 19000, timeout=5.0)
    opened = listener.open()
    assert opened["event"] == "listening"
    assert opened["service"] == "00004a38-facb-11e6-bd58-64006a7986d3"
    assert fake_hvsocket.peer_of(winsock.listeners[0].bound) == (WILDCARD, opened["service"])
    listener.count = 1
    listener.start()
    try:
        result = client.connect_once("hyperv", LOOPBACK, 19000, payload="World!", timeout=10.0)
    finally:
        listener.finished.wait(10.0)
    assert (result["outcome"], result["reply"]) == ("O", "Hello: World!")
    assert listener.accepted == 1
    assert listener.peers == [f"{LOOPBACK}:{opened['service']}"]


def test_python_312_connect_refused_is_x_with_the_wsa_name(windows):
    winsock = fake_hvsocket.FakeWinsock()
    windows.setattr(sockets, "socket", fake_hvsocket.cpython312_windows(winsock))
    result = client.connect_once("hyperv", PARENT, 19001, payload="x", timeout=3.0)
    assert (result["outcome"], result["errno_name"]) == ("X", "WSAECONNREFUSED")


@pytest.mark.parametrize("seconds,expected_ms", [(400.0, 300000), (300.0, 300000), (10.0, 10000), (0.0001, 1),
                                                 (0.0, 1)])
def test_connect_timeout_is_clamped_to_hvsocket_bounds(windows, seconds, expected_ms):
    """HVSOCKET_CONNECT_TIMEOUT above HVSOCKET_CONNECT_TIMEOUT_MAX is WSAEINVAL: an E before connecting."""
    winsock = fake_hvsocket.FakeWinsock()
    windows.setattr(sockets, "socket", fake_hvsocket.cpython312_windows(winsock))
    result = client.connect_once("hyperv", PARENT, 19001, payload="x", timeout=seconds or 1.0,
                                connect_timeout=seconds)
    assert result["phase"] == "connect", result  # got past setsockopt
    assert winsock.options == [(sockets.HV_PROTOCOL_RAW, sockets.HVSOCKET_CONNECT_TIMEOUT,
                                struct.pack("<I", expected_ms))]


def test_af_hyperv_fact_follows_the_winsock_catalog_not_os_name(windows):
    """A Windows without the Hyper-V RAW provider (no Hyper-V, no integration services): socket() fails."""
    winsock = fake_hvsocket.FakeWinsock(provider=False)
    windows.setattr(sockets, "socket", fake_hvsocket.cpython312_windows(winsock))
    assert sockets.hyperv_available() is False
    winsock.provider = True
    assert sockets.hyperv_available() is True


def test_af_hyperv_is_false_on_linux():
    assert common.IS_WINDOWS is False
    assert sockets.hyperv_available() is False


class FakeWinreg(types.ModuleType):
    """winreg on 64-bit Windows for a 32-bit Python: without KEY_WOW64_64KEY, HKLM\\SOFTWARE is
    redirected to SOFTWARE\\WOW6432Node, where the integration services' Parameters key does not exist
    (Microsoft docs, "Registry Redirector"; winreg.OpenKey(key, sub_key, reserved=0, access=KEY_READ))."""

    HKEY_LOCAL_MACHINE = 0x80000002
    KEY_READ = 0x20019
    KEY_WOW64_64KEY = 0x0100

    def __init__(self, vm_id: str):
        super().__init__("winreg")
        self.vm_id = vm_id
        self.opened: list[int] = []

    def OpenKey(self, key, sub_key, reserved=0, access=KEY_READ):
        self.opened.append(access)
        if not access & self.KEY_WOW64_64KEY:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return io.StringIO()  # a context manager, like a PyHKEY

    def QueryValueEx(self, key, name):
        assert name == "VirtualMachineId"
        return "{" + self.vm_id.upper() + "}", 1  # REG_SZ, as the integration services write it


def test_vm_id_is_read_from_the_64_bit_registry_view(monkeypatch):
    vm_id = str(uuid.UUID("b50f20e6-cf19-1796-ba60-d9cfe2d8fe29"))
    fake = FakeWinreg(vm_id)
    monkeypatch.setitem(sys.modules, "winreg", fake)
    assert probe_facts.windows_vm_id() == vm_id
    assert fake.opened and all(access & fake.KEY_WOW64_64KEY for access in fake.opened)
