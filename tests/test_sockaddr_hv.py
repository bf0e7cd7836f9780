"""SOCKADDR_HV as Windows lays it out, pinned byte for byte and rebuilt independently with ctypes.

No Windows here: the 36 bytes are written out by hand from the GUIDs (Data1/2/3 little-endian,
Data4 as is) and cross-checked with a ctypes Structure, which uses the same little-endian native
layout as Windows on x86/x64 -- independent of the fake's struct/uuid code (tests/fakes/fake_hvsocket.py
builds SOCKADDR_HV as CPython's getsockaddrarg does; the probe itself hands CPython GUID strings).
"""
from __future__ import annotations

import ctypes
import sys

import pytest

from harness.probe import common, sockets
from tests.fakes import fake_hvsocket

PARENT = "a42e7cda-d03f-480c-9cc2-a4de20abb878"
WILDCARD = "00000000-0000-0000-0000-000000000000"
PORT_19000 = "00004a38-facb-11e6-bd58-64006a7986d3"
WINDOWS_ONLY_SERVICE = "9866c7bc-0c89-4cb0-9427-5b526d1ae83b"

KNOWN = [
    (PARENT, PORT_19000,
     "2200" "0000"
     "da7c2ea4" "3fd0" "0c48" "9cc2a4de20abb878"
     "384a0000" "cbfa" "e611" "bd5864006a7986d3"),
    (WILDCARD, WINDOWS_ONLY_SERVICE,
     "2200" "0000"
     "00000000" "0000" "0000" "0000000000000000"
     "bcc76698" "890c" "b04c" "94275b526d1ae83b"),
]


class GUID(ctypes.Structure):
    _fields_ = [("Data1", ctypes.c_uint32), ("Data2", ctypes.c_uint16), ("Data3", ctypes.c_uint16),
                ("Data4", ctypes.c_uint8 * 8)]


class SOCKADDR_HV(ctypes.Structure):
    _fields_ = [("Family", ctypes.c_uint16), ("Reserved", ctypes.c_uint16),
                ("VmId", GUID), ("ServiceId", GUID)]


def ctypes_guid(text: str) -> GUID:
    """GUID fields parsed from the text by hand (no uuid module)."""
    d1, d2, d3, d4a, d4b = text.split("-")
    tail = bytes.fromhex(d4a + d4b)
    return GUID(int(d1, 16), int(d2, 16), int(d3, 16), (ctypes.c_uint8 * 8)(*tail))


def ctypes_sockaddr(vm_id: str, service_id: str) -> bytes:
    return bytes(SOCKADDR_HV(34, 0, ctypes_guid(vm_id), ctypes_guid(service_id)))


@pytest.mark.parametrize("vm_id,service_id,hex_bytes", KNOWN)
def test_pack_sockaddr_hv_exact_bytes(vm_id, service_id, hex_bytes):
    packed = fake_hvsocket.sockaddr_hv(vm_id, service_id)
    assert len(packed) == 36
    assert packed.hex() == hex_bytes


@pytest.mark.skipif(sys.byteorder != "little", reason="ctypes layout equals Windows' only on little-endian")
@pytest.mark.parametrize("vm_id,service_id,hex_bytes", KNOWN)
def test_ctypes_structure_agrees(vm_id, service_id, hex_bytes):
    assert ctypes.sizeof(SOCKADDR_HV) == 36
    built = ctypes_sockaddr(vm_id, service_id)
    assert built.hex() == hex_bytes
    assert fake_hvsocket.sockaddr_hv(vm_id, service_id) == built


def test_uppercase_and_braced_guids_pack_the_same():
    assert fake_hvsocket.sockaddr_hv("{A42E7CDA-D03F-480C-9CC2-A4DE20ABB878}", PORT_19000.upper()) == \
        ctypes_sockaddr(PARENT, PORT_19000)


def test_unpack_round_trip():
    assert fake_hvsocket.peer_of(ctypes_sockaddr(PARENT, PORT_19000)) == (PARENT, PORT_19000)


def test_service_template_for_port_19000():
    assert sockets.service_for_port(19000) == PORT_19000


@pytest.mark.parametrize("number,name", [
    (10061, "WSAECONNREFUSED"),
    (10060, "WSAETIMEDOUT"),
    (10051, "WSAENETUNREACH"),
    (10049, "WSAEADDRNOTAVAIL"),
    (10048, "WSAEADDRINUSE"),
    (10047, "WSAEAFNOSUPPORT"),
    (10065, "WSAEHOSTUNREACH"),
    (10054, "WSAECONNRESET"),
    (10013, "WSAEACCES"),
    (10022, "WSAEINVAL"),
])
def test_windows_error_codes_are_named(number, name):
    assert common.errno_name(number) == name


def test_linux_errno_still_named_by_errno_module():
    import errno

    assert common.errno_name(errno.ECONNREFUSED) == "ECONNREFUSED"
    assert common.errno_name(None) is None
