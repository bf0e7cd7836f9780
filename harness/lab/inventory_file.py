"""The inventory of a running lab: l1 (the "host", CID 2) and its guests vm21, vm22, ...

Written by `lab up` next to the lab's run state (paths and the SSH port are this run's), and
the same text, for the default cache and 2 guests, is committed as inventory/lab-in-a-box.yaml.
"""
from __future__ import annotations

from pathlib import Path

from harness.lab import netns as lab_netns
from harness.lab.backend import uds_path
from harness.lab.paths import LabPaths

L1 = "l1"
L1_HYBRID = "l1-hybrid"  # l1 seen as the host of the hybrid guests (its vsock side is a UDS per guest)
GUEST_PORT_BASE = 22000  # vmNN's sshd is forwarded to 127.0.0.1:(22000 + NN) inside L1


def guest_names(guests: int) -> list[str]:
    return [f"vm{20 + i}" for i in range(1, guests + 1)]


def hybrid_names(hybrid: int) -> list[str]:
    """The hybrid vsock guests (vhost-user device, backend in l1): vm31, vm32, ..."""
    return [f"vm{30 + i}" for i in range(1, hybrid + 1)]


def kernel_twin(name: str) -> str:
    """vm31 <-> vm21: the kernel-host guest a hybrid guest mirrors (same loopback, same place)."""
    return f"vm{guest_cid(name) - 10}"


def guest_cid(name: str) -> int:
    return int(name[2:])


def guest_has_loopback(name: str) -> bool:
    """Only the first guest loads vsock_loopback (B3 runs there); the others are bare, as in the recipe."""
    return name in ("vm21", "vm31")


def _tilde(path: Path) -> str:
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


def guest_netns(guests: int, netns: bool) -> dict[str, str]:
    """vmNN -> the namespace its qemu runs in (empty without --netns: every guest in l1's own)."""
    return {name: lab_netns.guest_netns(i) for i, name in enumerate(guest_names(guests))} if netns else {}


def _netns_nodes() -> list[str]:
    """l1 inside each namespace of `lab up --netns`: same access as l1, commands run in the namespace."""
    out = ["  # l1 inside the vsock network namespaces `lab up --netns` made (harness/lab/netns.py):",
           "  # same SSH access as l1; every command a cell starts there runs under `ip netns exec <ns>`."]
    for ns, mode in lab_netns.NAMESPACES.items():
        out.append(f"  - {{name: {lab_netns.node_name(L1, ns)}, netns: {ns}, of: {L1}, "
                   f"facts: {{vsock_ns_mode: {mode}}}}}")
    return out


def inventory_text(paths: LabPaths, port: int, guests: int, netns: bool = False, hybrid: int = 0,
                   hybrid_mode: str = "shared", backend_version: str = "") -> str:
    key, kh = _tilde(paths.client_key), _tilde(paths.known_hosts)
    out = [
        "# Lab-in-a-box: a real Linux vsock lab booted under qemu (TCG) by `hvsock-matrix lab up`.",
        "# l1 is a Linux KVM-style host (vhost_vsock + vsock_loopback loaded, local CID 2);",
        "# vm21.. are its guests (vhost-vsock-device,guest-cid=NN), reached through l1 as SSH jump.",
        "# vm21 loads vsock_loopback (in-VM loopback, B3); vm22.. do not (bare guests, as in the recipe).",
        "# Keys and known_hosts are lab-only, made in the lab cache; host keys are pinned (reject).",
        "inventory: lab-in-a-box",
        "description: qemu lab from harness/lab (L1 host + L2 guests), Linux AF_VSOCK only",
        "nodes:",
        f"  - name: {L1}",
        "    role: host",
        "    os: linux",
        "    family: vsock",
        "    cid: 2                          # VMADDR_CID_HOST: l1's local CID once vhost_vsock is loaded",
        "    lab_node: true",
        "    facts: {vsock_loopback: true, vhost_vsock: true}",
        "    access:",
        "      kind: ssh",
        "      host: 127.0.0.1",
        f"      port: {port}                     # qemu hostfwd, bound to loopback only",
        "      user: root",
        f"      key_file: {key}",
        f"      known_hosts: {kh}",
        "      host_key_policy: reject",
        "      use_ssh_config: false",
        "      connect_timeout: 60",
        "      python: /usr/bin/python3",
        "      workdir: /tmp/hvsock-matrix",
    ]
    if netns:
        out += _netns_nodes()
    placed = guest_netns(guests, netns)
    for name in guest_names(guests) + hybrid_names(hybrid):
        ns_facts = (f", host_netns: {placed[name]}, host_ns_mode: {lab_netns.NAMESPACES[placed[name]]}"
                    if name in placed else "")
        if name not in guest_names(guests):
            ns_facts += ", vsock_device: vhost-user-vsock"  # served by vhost-device-vsock in l1
        out += [
            f"  - name: {name}",
            "    role: vm",
            f"    parent: {L1 if name in guest_names(guests) else L1_HYBRID}",
            "    os: linux",
            "    family: vsock",
            f"    cid: {guest_cid(name)}",
        ] + ([] if name in guest_names(guests) else [f"    hybrid_uds: {uds_path(name)}"]) + [
            "    lab_node: true",
            f"    facts: {{vsock_loopback: {str(guest_has_loopback(name)).lower()}{ns_facts}}}",
            "    access:",
            "      kind: ssh",
            "      host: 127.0.0.1                # as seen from l1 (qemu hostfwd inside l1)",
            f"      port: {GUEST_PORT_BASE + guest_cid(name)}",
            "      user: root",
            f"      jump: {L1}",
            f"      key_file: {key}",
            f"      known_hosts: {kh}",
            "      host_key_policy: reject",
            "      use_ssh_config: false",
            "      connect_timeout: 300            # a fresh SSH handshake to a nested guest takes ~55 s",
            "      python: /usr/bin/python3",
            "      workdir: /tmp/hvsock-matrix",
        ]
    if hybrid:
        out[out.index("nodes:") + 1:out.index("nodes:") + 1] = _hybrid_host(port, key, kh, hybrid, hybrid_mode,
                                                                             backend_version)
    return "\n".join(out) + "\n"


def _hybrid_host(port: int, key: str, kh: str, hybrid: int, mode: str, version: str) -> list[str]:
    """l1 again, as the host side of the hybrid guests: the same machine, reached the same way, whose
    vsock side is a Unix socket per guest (family hybrid; each guest's UDS is its hybrid address)."""
    from harness.lab import backend

    lines = [
        f"  - name: {L1_HYBRID}",
        "    role: host",
        "    os: linux",
        "    family: hybrid",
        "    cid: 2                          # what the hybrid guests connect to (VMADDR_CID_HOST)",
        "    lab_node: true",
        f"    facts: {{hybrid_backend: '{version or backend.NAME}', hybrid_mode: {mode}, "
        f"hybrid_run_dir: {backend.HYBRID_RUN_DIR}, twin: {L1}}}",
        "    access:",
        "      kind: ssh",
        "      host: 127.0.0.1",
        f"      port: {port}",
        "      user: root",
        f"      key_file: {key}",
        f"      known_hosts: {kh}",
        "      host_key_policy: reject",
        "      use_ssh_config: false",
        "      connect_timeout: 60",
        "      python: /usr/bin/python3",
        "      workdir: /tmp/hvsock-matrix",
    ]
    return lines


def endpoints(port: int, guests: int, hybrid: int = 0) -> dict[str, tuple[str, int]]:
    eps = {L1: ("127.0.0.1", port)}
    for name in guest_names(guests) + hybrid_names(hybrid):
        eps[name] = ("127.0.0.1", GUEST_PORT_BASE + guest_cid(name))
    return eps


def write_inventory(paths: LabPaths, port: int, guests: int, netns: bool = False, hybrid: int = 0,
                    hybrid_mode: str = "shared", backend_version: str = "") -> Path:
    tmp = paths.inventory.with_suffix(".tmp")
    tmp.write_text(inventory_text(paths, port, guests, netns, hybrid, hybrid_mode, backend_version))
    tmp.replace(paths.inventory)
    return paths.inventory
