"""Test-suite wiring: the shared qemu lab fixture, and qemu tests ordered last.

The qemu tests share one booted lab (tests/qemu_lab.py); running them after every other test
keeps the lab's CPU load (TCG on two cores) off the fast tests; test_lab_down.py, which stops
the lab, runs after them, and the boots of other labs (test_lab_kernel_boot.py: an L1-only second
kernel; test_lab_netns_boot.py: sid with vsock namespaces; test_lab_hybrid_boot.py: hybrid vsock
guests behind vhost-device-vsock, its own folder and port) last.
"""
from __future__ import annotations

from tests.netns_lab import netns_lab  # noqa: F401  (module fixture: a fresh namespace lab per test module)
from tests.qemu_lab import lab  # noqa: F401  (session fixture)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        if item.get_closest_marker("qemu") is None:
            return 0
        return {"test_lab_down.py": 2, "test_lab_kernel_boot.py": 3, "test_lab_netns_boot.py": 3,
                "test_lab_hybrid_boot.py": 3}.get(item.path.name, 1)

    items.sort(key=rank)  # stable: file order kept within each group
