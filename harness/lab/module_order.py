"""Which modules the guests' init loads, and in what order, computed from the kernel's modules.dep.

A fixed list broke with newer kernels (6.12 has no fscache module any more: it went into netfs),
so the lab names only what it needs at each stage and takes every dependency, and the order,
from the kernel's own modules.dep (what modprobe would do: dependencies first).
"""
from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError

# What each stage of files/init.sh needs; everything these depend on is added from modules.dep.
STAGES = {
    "base": ["virtio_mmio", "virtio_pci", "virtio_net", "virtio_rng", "9pnet_virtio", "9p", "overlay"],
    "l1": ["vsock_loopback", "vsock_diag", "vhost_vsock"],
    "l2": ["vmw_vsock_virtio_transport", "vsock_diag"],
    "loopback": ["vsock_loopback"],  # L2 loads it only when told (hvlab.loopback=1)
}
# A stage loads only what the stages already loaded before it did not (init.sh's order).
EARLIER = {"base": [], "l1": ["base"], "l2": ["base"], "loopback": ["base", "l2"]}


def module_name(path: str) -> str:
    """kernel/net/vmw_vsock/vsock.ko.xz -> vsock; dashes become underscores, as the kernel does."""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def read_modules_dep(moddir: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (relative path, names of its dependencies), from modules.dep (made by depmod)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        path, deps = line.split(":", 1)
        out[module_name(path)] = (path, [module_name(d) for d in deps.split()])
    return out


def read_builtin(moddir: Path) -> set[str]:
    path = moddir / "modules.builtin"
    return {module_name(line) for line in path.read_text().splitlines() if line.strip()} if path.exists() else set()


def load_order(targets: list[str], deps: dict[str, tuple[str, list[str]]], builtin: set[str],
               release: str = "") -> list[str]:
    """Every module the targets need, dependencies first; built-in ones are left out."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in builtin:
            return
        if name not in deps:
            raise HarnessError(f"lab: kernel {release}: module {name} is neither built in nor in modules.dep")
        if name in visiting:
            raise HarnessError(f"lab: kernel {release}: modules.dep has a cycle through {name}")
        visiting.add(name)
        for dep in deps[name][1]:
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for target in targets:
        visit(target.replace("-", "_"))
    return order


def stage_orders(deps: dict[str, tuple[str, list[str]]], builtin: set[str], release: str = "") -> dict[str, list[str]]:
    """stage -> modules to insmod in that stage, none loaded twice."""
    full = {stage: load_order(targets, deps, builtin, release) for stage, targets in STAGES.items()}
    out = {}
    for stage, order in full.items():
        before = {m for earlier in EARLIER[stage] for m in full[earlier]}
        out[stage] = [m for m in order if m not in before]
    return out
