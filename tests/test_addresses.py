"""Every constant of the documents and every conversion and resolution of harness/addresses.py."""
from __future__ import annotations

import pytest

from harness import addresses as a
from harness.node import Inventory, Node


def test_hyperv_constants_match_the_documents():
    assert a.AF_HYPERV == 34
    assert a.SOCK_STREAM == 1
    assert a.HV_PROTOCOL_RAW == 1
    assert a.SOCKADDR_HV_SIZE == 36 == 2 + 2 + 16 + 16
    assert a.HVSOCKET_CONNECT_TIMEOUT == 1
    assert a.HYPERV_RAW_SERVICE_FLAGS == 0x20026
    assert a.HV_GUID_ZERO == "00000000-0000-0000-0000-000000000000"
    assert a.HV_GUID_WILDCARD == a.HV_GUID_ZERO
    assert a.HV_GUID_BROADCAST == "ffffffff-ffff-ffff-ffff-ffffffffffff"
    assert a.HV_GUID_CHILDREN == "90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd"
    assert a.HV_GUID_LOOPBACK == "e0e16197-dd56-4a10-9195-5ee7a155a838"
    assert a.HV_GUID_PARENT == "a42e7cda-d03f-480c-9cc2-a4de20abb878"
    assert a.HV_GUID_SILOHOST == "36bd0c5c-7276-4223-88ba-7d03b654c568"
    assert a.VSOCK_TEMPLATE_GUID == "00000000-facb-11e6-bd58-64006a7986d3"
    assert a.WINDOWS_ONLY_EXAMPLE_SERVICE_GUID == "9866c7bc-0c89-4cb0-9427-5b526d1ae83b"
    assert a.GCS_REGISTRY_KEY.endswith(r"\Virtualization\GuestCommunicationServices")
    assert a.GUEST_VM_ID_REGISTRY_VALUE == "VirtualMachineId"


def test_vsock_constants_match_the_documents():
    assert a.AF_VSOCK == 40
    assert a.SOCKADDR_VM_SIZE == 16
    assert a.VMADDR_CID_ANY == 4294967295 == 2**32 - 1
    assert a.VMADDR_CID_LOCAL == 1 == a.VMADDR_CID_RESERVED
    assert a.VMADDR_CID_HOST == 2
    assert a.VMADDR_CID_HYPERVISOR == 0
    assert a.SO_VM_SOCKETS_CONNECT_TIMEOUT == 6
    assert a.IOCTL_VM_SOCKETS_GET_LOCAL_CID == (7 << 8) | 0xB9
    assert (a.DEV_VSOCK_MAJOR, a.DEV_VSOCK_MINOR) == (10, 118)


def test_port_ranges_per_family():
    assert a.port_range("tcp") == (1, 65535)
    assert a.port_range("vsock") == a.port_range("hyperv") == (1, 4294967294)
    assert a.check_port(65535, "tcp") is None
    assert "out of range" in a.check_port(65536, "tcp")
    assert a.check_port(4294967294, "vsock") is None
    assert "out of range" in a.check_port(4294967295, "hyperv")
    assert "out of range" in a.check_port(0)
    assert "integer" in a.check_port(True)


@pytest.mark.parametrize("text", [
    "{A42E7CDA-D03F-480C-9CC2-A4DE20ABB878}", "a42e7cda-d03f-480c-9cc2-a4de20abb878",
    "A42e7CDA-d03f-480C-9cc2-A4de20abb878", "  {a42e7cda-d03f-480c-9cc2-a4de20abb878}  ",
])
def test_guid_parsing_any_case_with_or_without_braces(text):
    assert a.parse_guid(text) == a.HV_GUID_PARENT
    assert a.format_guid(text) == a.HV_GUID_PARENT


@pytest.mark.parametrize("text", [
    "a42e7cda-d03f-480c-9cc2-a4de20abb87", "a42e7cdad03f480c9cc2a4de20abb878", "{a42e7cda-d03f-480c-9cc2-a4de20abb878",
    "g42e7cda-d03f-480c-9cc2-a4de20abb878", "", 42, None,
])
def test_bad_guids_are_rejected(text):
    with pytest.raises(ValueError):
        a.parse_guid(text)


def test_guid_names():
    assert a.guid_name("00000000-0000-0000-0000-000000000000") == "HV_GUID_WILDCARD"
    assert a.guid_name("{E0E16197-DD56-4A10-9195-5EE7A155A838}") == "HV_GUID_LOOPBACK"
    assert a.guid_name("36BD0C5C-7276-4223-88BA-7D03B654C568") == "HV_GUID_SILOHOST"
    assert a.guid_name("b50f20e6-cf19-1796-ba60-d9cfe2d8fe29") is None


@pytest.mark.parametrize("port,guid", [
    (19000, "00004a38-facb-11e6-bd58-64006a7986d3"),
    (2761, "00000ac9-facb-11e6-bd58-64006a7986d3"),
    (0, "00000000-facb-11e6-bd58-64006a7986d3"),
    (4294967295, "ffffffff-facb-11e6-bd58-64006a7986d3"),
])
def test_port_service_guid_template_both_ways(port, guid):
    assert a.service_guid_for(port) == guid
    assert a.port_for_service_guid(guid) == port
    assert a.port_for_service_guid(guid.upper()) == port


def test_documents_uppercase_example_service_guid():
    assert a.port_for_service_guid("00004A38-facb-11e6-bd58-64006a7986d3") == 19000


def test_guid_not_of_the_template_has_no_port():
    assert a.port_for_service_guid(a.WINDOWS_ONLY_EXAMPLE_SERVICE_GUID) is None
    assert a.port_for_service_guid(a.HV_GUID_PARENT) is None


def test_explicit_service_guid_wins_and_is_canonical():
    assert a.service_guid_for(19000, "{9866C7BC-0C89-4CB0-9427-5B526D1AE83B}") == a.WINDOWS_ONLY_EXAMPLE_SERVICE_GUID


@pytest.mark.parametrize("port", [-1, 2**32, "19000", True])
def test_service_guid_needs_a_32_bit_port(port):
    with pytest.raises(ValueError):
        a.service_guid_for(port)


# --- tokens ---------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,kind,canon", [
    ("any", "bind", "wildcard"), ("WILDCARD", "bind", "wildcard"), ("local", "target", "loopback"),
    ("host", "target", "parent"), ("children", "bind", "children"), ("self", "bind", "self"),
    ("server", "target", "server"), ("node:win-vm", "target", "node:win-vm"), ("vm:win-vm", "bind", "node:win-vm"),
    (21, "target", "21"), ("4294967295", "bind", "4294967295"), ("10.0.0.2", "target", "10.0.0.2"),
    ("{B50F20E6-CF19-1796-BA60-D9CFE2D8FE29}", "target", "b50f20e6-cf19-1796-ba60-d9cfe2d8fe29"),
])
def test_tokens_normalize(raw, kind, canon):
    assert a.normalize_token(raw, kind) == canon


@pytest.mark.parametrize("raw,kind", [
    ("server", "bind"), ("everywhere", "target"), ("4294967296", "target"), ("-1", "bind"), ("node:", "bind"),
    (True, "bind"), ("", "target"), (None, "target"),
])
def test_bad_tokens_raise(raw, kind):
    with pytest.raises(ValueError):
        a.normalize_token(raw, kind)


# --- resolution -----------------------------------------------------------------------------
HV_HOST = Node("hv-host", "host", "windows", "hyperv", address="10.0.0.1")
WIN_VM = Node("win-vm", "vm", "windows", "hyperv", parent="hv-host", vm_id="b50f20e6-cf19-1796-ba60-d9cfe2d8fe29")
LNX_VM = Node("lnx-vm", "vm", "linux", "vsock", parent="hv-host", vm_id="f952c5ef-ea6c-4c83-b52c-38f31cf68b61")
KVM_HOST = Node("kvm-host", "host", "linux", "vsock", cid=2)
GUEST = Node("guest", "vm", "linux", "vsock", parent="kvm-host", cid=21)
T_HOST = Node("t-host", "host", "linux", "tcp", address="10.1.0.1")
T_VM = Node("t-vm", "vm", "linux", "tcp", parent="t-host", address="10.1.0.2")
T_ORPHAN = Node("t-orphan", "host", "linux", "tcp")
INV = Inventory("t", "t.yaml", {n.name: n for n in (HV_HOST, WIN_VM, LNX_VM, KVM_HOST, GUEST, T_HOST, T_VM, T_ORPHAN)})

TABLE = [  # token, family node, expected address (None = n/a)
    ("wildcard", HV_HOST, a.HV_GUID_WILDCARD), ("wildcard", GUEST, "4294967295"), ("wildcard", T_VM, "0.0.0.0"),
    ("loopback", HV_HOST, a.HV_GUID_LOOPBACK), ("loopback", GUEST, "1"), ("loopback", T_VM, "127.0.0.1"),
    ("parent", WIN_VM, a.HV_GUID_PARENT), ("parent", GUEST, "2"),
    ("children", HV_HOST, a.HV_GUID_CHILDREN), ("children", GUEST, None), ("children", T_VM, None),
    ("broadcast", HV_HOST, a.HV_GUID_BROADCAST), ("broadcast", GUEST, None), ("broadcast", T_VM, None),
    ("self", WIN_VM, WIN_VM.vm_id), ("self", GUEST, "21"), ("self", T_VM, "10.1.0.2"),
    ("self", HV_HOST, None),  # a Hyper-V host has no VM ID of its own in the inventory
]


@pytest.mark.parametrize("token,node,addr", TABLE, ids=[f"{t}-{n.family}" for t, n, _ in TABLE])
def test_bind_resolution_table(token, node, addr):
    res = a.resolve_bind(token, node, INV)
    assert res.addr == addr
    assert (res.na_reason is None) == (addr is not None)
    assert res.family == node.family
    if addr is not None:
        assert addr in res.display


def test_display_names_the_constant():
    assert a.resolve_target("parent", WIN_VM, HV_HOST, INV).display == f"HV_GUID_PARENT {a.HV_GUID_PARENT}"
    assert a.resolve_target("parent", GUEST, KVM_HOST, INV).display == "VMADDR_CID_HOST 2"
    assert a.resolve_bind("any", GUEST, INV).display == "VMADDR_CID_ANY 4294967295"
    assert a.resolve_bind(2, KVM_HOST, INV).display == "VMADDR_CID_HOST 2"


def test_children_in_vsock_is_na_with_the_documents_reason():
    res = a.resolve_bind("children", GUEST, INV)
    assert res.is_na and res.addr is None
    assert res.na_reason == "vsock has no equivalent of HV_GUID_CHILDREN"


@pytest.mark.parametrize("vsock_name,hv_name,token", a.EQUIVALENCES)
def test_documented_equivalences_hold_in_the_resolution(vsock_name, hv_name, token):
    vs = a.resolve_target(token, GUEST, KVM_HOST, INV)
    hv = a.resolve_target(token, WIN_VM, HV_HOST, INV)
    assert vs.addr == str(a.VMADDR_CIDS[vsock_name]) and vs.display.startswith(vsock_name)
    assert hv.addr == a.HV_GUIDS[hv_name] and hv.display.startswith(hv_name)


def test_equivalences_are_the_three_the_document_states():
    assert {(v, h) for v, h, _ in a.EQUIVALENCES} == {
        ("VMADDR_CID_ANY", "HV_GUID_WILDCARD"), ("VMADDR_CID_LOCAL", "HV_GUID_LOOPBACK"),
        ("VMADDR_CID_HOST", "HV_GUID_PARENT")}


def test_each_side_resolves_in_its_own_family_b1_and_b2():
    # B1: Windows host binds HV_GUID_WILDCARD; the Linux VM connects CID 2 (same port -> template GUID)
    assert a.resolve_bind("wildcard", HV_HOST, INV).addr == a.HV_GUID_WILDCARD
    assert a.resolve_target("parent", LNX_VM, HV_HOST, INV).addr == "2"
    # B2: Linux VM binds VMADDR_CID_ANY; the Windows host targets the VM's ID
    assert a.resolve_bind("wildcard", LNX_VM, INV).addr == "4294967295"
    assert a.resolve_target("server", HV_HOST, LNX_VM, INV).addr == "f952c5ef-ea6c-4c83-b52c-38f31cf68b61"


def test_server_and_node_targets():
    assert a.resolve_target("server", KVM_HOST, GUEST, INV).addr == "21"
    assert a.resolve_target("node:guest", KVM_HOST, GUEST, INV).addr == "21"
    res = a.resolve_target("node:nobody", KVM_HOST, GUEST, INV)
    assert res.is_na and "nobody" in res.na_reason
    res = a.resolve_target("server", LNX_VM, WIN_VM, INV)  # vsock client, Windows VM has no CID
    assert res.is_na and "win-vm has no cid" in res.na_reason


def test_tcp_parent_is_the_parent_nodes_address_as_target_only():
    assert a.resolve_target("parent", T_VM, T_HOST, INV).addr == "10.1.0.1"
    assert a.resolve_bind("parent", T_VM, INV).is_na
    assert a.resolve_target("parent", T_ORPHAN, T_HOST, INV).is_na
    assert a.resolve_target("server", T_HOST, T_ORPHAN, INV).is_na  # no address


def test_tcp_never_mixes_with_vsock_or_hyperv():
    res = a.resolve_target("server", T_HOST, GUEST, INV)
    assert res.is_na and "tcp does not mix" in res.na_reason
    assert a.resolve_target("server", GUEST, T_HOST, INV).is_na


def test_literals_only_mean_something_in_their_own_family():
    assert a.resolve_target("21", KVM_HOST, GUEST, INV).addr == "21"
    assert a.resolve_target("21", HV_HOST, WIN_VM, INV).is_na
    assert a.resolve_target(WIN_VM.vm_id.upper(), HV_HOST, WIN_VM, INV).addr == WIN_VM.vm_id
    assert a.resolve_target(WIN_VM.vm_id, KVM_HOST, GUEST, INV).is_na
    assert a.resolve_target("10.1.0.2", T_HOST, T_VM, INV).addr == "10.1.0.2"
    assert a.resolve_target("10.1.0.2", KVM_HOST, GUEST, INV).is_na


# --- the one GUID rule (issue 19): uuid.UUID underneath, the file's shape on top ----------------

def test_guids_are_uuid_values_in_the_files_shape():
    import uuid

    from harness.addresses import canonical_guid, guid, is_guid

    value = guid("{A42E7CDA-D03F-480C-9CC2-A4DE20ABB878}")
    assert isinstance(value, uuid.UUID) and str(value) == "a42e7cda-d03f-480c-9cc2-a4de20abb878"
    for text in ("{a42e7cda-d03f-480c-9cc2-a4de20abb878", "a42e7cdad03f480c9cc2a4de20abb878",
                 "urn:uuid:a42e7cda-d03f-480c-9cc2-a4de20abb878", "a42e7cda-d03f-480c-9cc2-a4de20abb87g", "", 7, None):
        assert not is_guid(text) and canonical_guid(text) is None, text


@pytest.mark.parametrize("port", [0, 1, 19000, 0x7FFFFFFF, 0xFFFFFFFF])
def test_port_and_service_guid_round_trip_everywhere(port):
    from harness.addresses import port_for_service_guid, service_guid_for
    from harness.hyperv.registration import service_guid, template_port

    text = service_guid_for(port)
    assert text == f"{port:08x}-facb-11e6-bd58-64006a7986d3" == service_guid(port)
    assert port_for_service_guid(text) == port == template_port(text.upper())
    assert port_for_service_guid("a42e7cda-d03f-480c-9cc2-a4de20abb878") is None


def test_registration_takes_the_port_range_of_hyperv():
    from harness.hyperv.registration import parse_port_range

    assert parse_port_range("1-4294967294") == (1, 4294967294)
    with pytest.raises(ValueError, match="1 <= A <= B <= 4294967294"):
        parse_port_range("0-5")
