"""Where hybrid vsock sockets may be: the paths of a hybrid address, and the fence around them.

Apart from harness/probe/hybrid.py so that sockets.py can check a path without importing the
listener (no import cycle). Stdlib only, Python >= 3.8.
"""
import os

from . import common
from .common import LAB_ENV, LAB_MARKER, Refused

HYBRID_RUN_DIR = "/run/hvlab/hybrid"  # harness/lab/backend.py: the lab's hybrid run folder, in l1's own /run


def uds_paths(addr):
    """The Unix socket paths of an address: one path, or several joined by ',' (a host binding every guest)."""
    paths = [p for p in str(addr).split(",") if p]
    if not paths:
        raise ValueError(f"hybrid address {addr!r}: no Unix socket path")
    for path in paths:
        if not path.startswith("/") or "\0" in path:
            raise ValueError(f"hybrid address {path!r}: not an absolute path")
    return paths


def listen_path(uds, port):
    """Where a host program listens for guests connecting to CID 2 port `port`: <uds>_<port>."""
    return f"{uds}_{int(port)}"


def check_paths(paths, lab_node):
    """Refused unless this is a lab node and every path lies in the lab's hybrid run folder."""
    if not common.lab_allowed(lab_node):
        raise Refused(f"hybrid vsock refused: not a lab node (pass --lab-node, set {LAB_ENV}=1, or create {LAB_MARKER} on a lab "
                      "guest)")
    root = os.path.realpath(HYBRID_RUN_DIR)
    for path in paths:
        folder = os.path.realpath(os.path.dirname(path))
        if folder != root and not folder.startswith(root + os.sep):
            raise Refused(f"hybrid vsock refused: {path} is outside the lab's hybrid run folder {HYBRID_RUN_DIR}")
