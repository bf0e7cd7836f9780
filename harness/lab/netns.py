"""`lab up --netns`: vsock network namespaces inside l1, laid out as the kernel's own selftest does.

Linux >= 7.0 gives every network namespace a vsock mode (`/proc/sys/net/vsock/ns_mode`, read-only),
taken at creation from the creator's `child_ns_mode`, which is write-once (net/vmw_vsock/af_vsock.c;
a local namespace cannot ask for global children). tools/testing/selftests/vsock/vmtest.sh
(add_namespaces(), after "selftests/vsock: use parent namespaces for child_ns_mode") therefore makes
one parent namespace per mode, writes its child_ns_mode once, and creates the children from inside
it with `nsenter --net=/var/run/netns/<parent> ip netns add <child>` (nsenter, not `ip netns exec`,
which would unshare the mount namespace and hide the new bind mount). init.sh does exactly that in
l1; l1 itself stays in the init namespace, whose child_ns_mode is never written.

A VM belongs to the namespace of the process that opened /dev/vhost-vsock (drivers/vhost/vsock.c
vhost_vsock_dev_open(): `net = current->nsproxy->net_ns`), so each guest's qemu is started with
`ip netns exec <ns>`, as vmtest.sh vm_start() does. Its SSH forward then listens on that namespace's
loopback; init.sh bridges it to l1's own 127.0.0.1:220NN through a unix socket with two socat
processes, the bridge vmtest.sh builds between namespaces (test_ns_diff_global_host_connect_to_global_vm_ok).

This module owns the layout (namespaces, their modes, which guest lives where, node names); the
shell side gets it on l1's kernel command line.
"""
from __future__ import annotations

from harness.errors import HarnessError
from harness.lab.paths import KernelPaths

MODES = ("global", "local")
# namespace -> its vsock mode (children of "<mode>-parent"), in vmtest.sh's names
NAMESPACES = {"global0": "global", "global1": "global", "local0": "local", "local1": "local"}
PARENTS = {mode: f"{mode}-parent" for mode in MODES}
# guest i (vm21, vm22, vm23) -> the namespace its qemu runs in
GUEST_NETNS = ("global0", "local0", "local1")
MAX_GUESTS = len(GUEST_NETNS)
NS_SYSCTL_MARK = b"child_ns_mode"  # the sysctl's name, a string in the vsock module of kernels that have it


def node_name(host: str, namespace: str) -> str:
    """l1 + local0 -> l1-local0: the inventory node that is l1 inside that namespace."""
    return f"{host}-{namespace}"


def guest_netns(index: int) -> str:
    """The namespace of the index-th guest (0-based)."""
    return GUEST_NETNS[index]


def kernel_has_vsock_netns(kernel: KernelPaths) -> bool:
    """Does this kernel's vsock core know child_ns_mode? (module vsock.ko, or vmlinux if built in)."""
    module = kernel.modules_dir / "vsock.ko"
    if module.exists():
        return NS_SYSCTL_MARK in module.read_bytes()
    return kernel.vmlinux.exists() and NS_SYSCTL_MARK in kernel.vmlinux.read_bytes()


def check_kernel(kernel: KernelPaths, release: str, spec: str) -> None:
    """One line refusing --netns on a kernel without vsock namespaces, before anything boots."""
    if not kernel_has_vsock_netns(kernel):
        raise HarnessError(f"lab: --netns: kernel {release} ({spec}) has no vsock network namespaces "
                           f"(no /proc/sys/net/vsock/child_ns_mode; Linux >= 7.0 has them: --kernel sid)")


def cmdline(guests: int) -> list[str]:
    """The words l1's init reads: namespaces on, and each guest's namespace in guest order."""
    if guests > MAX_GUESTS:
        raise HarnessError(f"lab: --netns places at most {MAX_GUESTS} guests ({', '.join(GUEST_NETNS)})")
    return ["hvlab.netns=1", f"hvlab.gnetns={','.join(GUEST_NETNS[:guests]) or '-'}"]
