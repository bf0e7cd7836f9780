"""`info`: what a node is (OS, Python, vsock modules, CID, VM ID), asked without AF_VSOCK.

Stdlib only, Python >= 3.8. The /dev/vsock ioctl is made on lab nodes only.
"""
import os
import socket
import struct

from . import common
from .common import lab_allowed
from .protocol import Event
from .sockets import IOCTL_VM_SOCKETS_GET_LOCAL_CID, hyperv_available, windows_python_problem


def local_cid():
    import fcntl
    with open("/dev/vsock", "rb") as f:
        buf = bytearray(4)
        fcntl.ioctl(f.fileno(), IOCTL_VM_SOCKETS_GET_LOCAL_CID, buf, True)
        return struct.unpack("I", bytes(buf))[0]


GUEST_PARAMETERS_KEY = r"SOFTWARE\Microsoft\Virtual Machine\Guest\Parameters"  # under HKLM (document 001)


def windows_vm_id():
    """VirtualMachineId from the 64-bit registry view: a 32-bit Python on 64-bit Windows would
    otherwise be redirected to WOW6432Node, where the integration services write nothing."""
    try:
        import importlib
        import uuid
        winreg = importlib.import_module("winreg")  # Windows only: typed as a plain module off Windows
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, GUEST_PARAMETERS_KEY,
                            0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY) as key:
            value, _ = winreg.QueryValueEx(key, "VirtualMachineId")
        return str(uuid.UUID(str(value)))
    except Exception:
        return None


# hv_kvp_daemon's pools (torvalds/linux tools/hv/hv_kvp_daemon.c: KVP_CONFIG_LOC "/var/lib/hyperv",
# "%s/.kvp_pool_%d", struct kvp_record { char key[HV_KVP_EXCHANGE_MAX_KEY_SIZE];
# char value[HV_KVP_EXCHANGE_MAX_VALUE_SIZE]; } = 512 + 2048 bytes, NUL-padded UTF-8). Microsoft's
# "Data Exchange: Using key-value pairs" maps pool 3 to the Windows guest's
# Virtual Machine\Guest\Parameter key, which holds VirtualMachineId.
KVP_POOL = "/var/lib/hyperv/.kvp_pool_%d"
KVP_PARAMETER_POOL = 3
KVP_KEY_SIZE, KVP_VALUE_SIZE = 512, 2048
KVP_MAX_BYTES = 4 * 1024 * 1024  # bounded read whatever the file holds


def kvp_records(path):
    """(key, value) pairs of one pool file; [] when it does not exist or cannot be read."""
    try:
        with open(path, "rb") as f:
            try:  # a shared lock, as Microsoft's sample reader takes, never waiting long for the daemon
                import fcntl
                for _ in range(20):
                    try:
                        fcntl.lockf(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                        break
                    except OSError:
                        import time
                        time.sleep(0.05)
            except ImportError:
                pass
            data = f.read(KVP_MAX_BYTES)
    except OSError:
        return []
    size = KVP_KEY_SIZE + KVP_VALUE_SIZE
    out = []
    for offset in range(0, len(data) - size + 1, size):
        key = data[offset:offset + KVP_KEY_SIZE].split(b"\0", 1)[0].decode("utf-8", "replace")
        value = data[offset + KVP_KEY_SIZE:offset + size].split(b"\0", 1)[0].decode("utf-8", "replace")
        out.append((key, value))
    return out


def kvp_vm_id(pool_path=None):
    """VirtualMachineId as a Linux guest on Hyper-V has it from the host (hv_kvp_daemon's pool 3), or None."""
    import uuid
    for key, value in kvp_records(pool_path or KVP_POOL % KVP_PARAMETER_POOL):
        if key == "VirtualMachineId":
            try:
                return str(uuid.UUID(value.strip()))
            except ValueError:
                return None
    return None


VSOCK_SYSCTL = "/proc/sys/net/vsock"  # Linux >= 7.0: ns_mode (read-only), child_ns_mode (write-once)


def vsock_ns_facts(base=VSOCK_SYSCTL):
    """The vsock mode of the network namespace this process runs in, and what its children get.

    Read from procfs (the sysctls are per network namespace: net/vmw_vsock/af_vsock.c registers
    them per net), so a node that is a namespace of another (`ip netns exec`) reports its own.
    None on kernels without vsock namespaces (the files are absent).
    """
    out = {}
    for name, key in (("ns_mode", "vsock_ns_mode"), ("child_ns_mode", "vsock_child_ns_mode")):
        try:
            with open(os.path.join(base, name)) as f:
                out[key] = f.read().strip() or None
        except OSError:
            out[key] = None
    return out


def socat_version(timeout=5.0):
    """socat's version from `socat -V` (None when socat is absent or silent): the probe and the
    doctor's controller facts read it the same way."""
    import subprocess  # imported when facts are asked for: a resident session starts with few modules
    try:
        out = subprocess.run(["socat", "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        if "socat version" in line:
            return line.split("socat version", 1)[1].split()[0]
    return None


def info_facts(lab_node=False):
    import platform
    facts = {"event": Event.INFO, "hostname": socket.gethostname(), "os": platform.system().lower(),
             "kernel": platform.release(), "python": platform.python_version(),
             "local_cid": None, "dev_vsock": os.path.exists("/dev/vsock"), "vsock_modules": [],
             "socat_version": None, "vm_id": None, "lab_node": lab_allowed(lab_node),
             "af_hyperv": hyperv_available(), "python_problem": windows_python_problem()}
    if facts["dev_vsock"]:
        if facts["lab_node"]:
            try:
                facts["local_cid"] = local_cid()
            except OSError as exc:
                facts["local_cid_error"] = str(exc)
        else:
            facts["refused"] = ["/dev/vsock ioctl: not a lab node"]
    try:
        with open("/proc/modules") as f:
            facts["vsock_modules"] = sorted(
                line.split()[0] for line in f
                if "vsock" in line.split()[0] or line.split()[0] in ("hv_sock", "vmw_vmci"))
    except OSError:
        pass
    version = socat_version()
    if version:
        facts["socat_version"] = version
    if common.IS_WINDOWS:
        facts["vm_id"] = windows_vm_id()
        facts["vm_id_source"] = "registry" if facts["vm_id"] else None
    else:
        facts["vm_id"] = kvp_vm_id()
        facts["vm_id_source"] = "kvp" if facts["vm_id"] else None
        facts.update(vsock_ns_facts())
    return facts
