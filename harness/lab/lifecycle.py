"""`lab up | status | down`: build what is missing, boot L1 (which boots the guests), wait, tear down.

`up` is idempotent (a lab that is up with the same guest count is reused), serialised by a lock
file (pytest-xdist workers may all ask for the lab at once), and undoes itself on any failure or
interrupt. `down` stops only the qemu whose PID is in our pid file and removes the run folder.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import threading
import time
from typing import Any

from harness.errors import HarnessError
from harness.lab import inventory_file as inv
from harness.lab import netns as lab_netns
from harness.lab import qemu
from harness.lab.initramfs import ensure_initramfs
from harness.lab.kernel import Kernel, ensure_kernel
from harness.lab.kernel_spec import check_spec, resolve
from harness.lab.keys import ensure_keys, write_known_hosts
from harness.lab.paths import LabPaths
from harness.lab.progress import ConsoleTail, Progress, plain_progress
from harness.lab.readiness import L1Client, tcp_banner

DEFAULT_PORT = int(os.environ.get("HVSOCK_MATRIX_LAB_PORT", 2222))
L1_TIMEOUT = 180.0  # recipe: L1 ssh at 7-8 s; generous for a loaded machine
# recipe: L2 sshd ready at ~170 s, two L2s ~180 s; all must fit in 10 min. A machine shared with
# other labs needs longer (measured: 520 s at load 11): HVSOCK_MATRIX_LAB_GUESTS_TIMEOUT.
GUESTS_TIMEOUT = float(os.environ.get("HVSOCK_MATRIX_LAB_GUESTS_TIMEOUT", 540))
MAX_GUESTS = 2  # 2 cores: an idle L2 takes 60-100% of an L1 vCPU
MAX_HYBRID = 2  # hybrid guests (vm31..) on top; more than two nested guests in all crawl on 2 cores


@contextlib.contextmanager
def _locked(paths: LabPaths):
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_state(paths: LabPaths) -> dict | None:
    try:
        return json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return None


def _write_state(paths: LabPaths, state: dict) -> None:
    tmp = paths.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(paths.state_file)


def is_up(paths: LabPaths | None = None) -> bool:
    """Our qemu runs, its boot finished, and l1's sshd answers."""
    paths = paths or LabPaths.default()
    state = read_state(paths)
    return bool(state and state.get("ready") and qemu.running_pid(paths)
                and tcp_banner("127.0.0.1", state["port"], timeout=5))


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise HarnessError("lab: no free loopback port for l1's sshd")


def up(guests: int = 2, progress: Progress = plain_progress, port: int | None = None,
       paths: LabPaths | None = None, kernel: str | None = None, guest_kernel: str | None = None,
       netns: bool = False, hybrid: int = 0, hybrid_mode: str = "shared") -> dict:
    """Boot (or reuse) the lab; returns its state dict (inventory path, port, kernels, boot times).

    kernel / guest_kernel are SPECs (stable, backports, sid, a Debian version); the guests run
    the host's kernel unless told otherwise. With no kernel given, a running lab is reused on
    whatever kernels it runs (what the pytest plugin wants), and a new one boots `stable`.
    netns: vsock network namespaces in l1 and each guest's qemu in one (harness/lab/netns.py);
    refused on a kernel without them, before it boots.
    hybrid: that many hybrid vsock guests (vm31..: vhost-user device, vhost-device-vsock in l1),
    hybrid_mode: one backend for all of them (`shared`) or one each (`per-guest`).
    """
    paths = paths or LabPaths.default()
    most = lab_netns.MAX_GUESTS if netns else MAX_GUESTS
    if not 0 <= guests <= most:
        raise HarnessError(f"lab: --guests {guests}: 0..{most}"
                           + (f" with --netns ({', '.join(lab_netns.GUEST_NETNS)})" if netns else
                              " (2 cores; an idle L2 takes most of a vCPU)"))
    if not 0 <= hybrid <= MAX_HYBRID:
        raise HarnessError(f"lab: --hybrid {hybrid}: 0..{MAX_HYBRID} (2 cores; an idle L2 takes most of a vCPU)")
    backend_version = ""
    if hybrid:
        from harness.lab import backend

        if hybrid_mode not in backend.MODES:
            raise HarnessError(f"lab: --hybrid-backend {hybrid_mode}: one of {', '.join(backend.MODES)}")
        backend_version = backend.check_binary()
    for spec in (kernel, guest_kernel):
        if spec is not None:
            check_spec(spec)
    with _locked(paths):
        state = read_state(paths)
        if state and qemu.running_pid(paths):
            same_kernels = (kernel is None and guest_kernel is None) or _runs_kernels(paths, state, kernel, guest_kernel)
            same_hybrid = _hybrid_of(state) == (hybrid, hybrid_mode if hybrid else None)
            if state.get("ready") and state["guests"] == guests and same_kernels and same_hybrid and \
                    bool(state.get("netns")) == netns and tcp_banner("127.0.0.1", state["port"]):
                progress(f"lab is up (pid {state['pid']}, {guests} guests, {kernels_text(state)}): reusing it")
                return state
            raise HarnessError(f"lab: a lab is running with {state['guests']} guests{_hybrid_text(state)} on "
                               f"{kernels_text(state)}{' with --netns' if state.get('netns') else ''} "
                               f"(ready: {state.get('ready')}); run `hvsock-matrix lab down` first")
        _remove_run(paths)
        host_spec = kernel or "stable"
        return _boot(paths, guests, progress, port or DEFAULT_PORT, host_spec, guest_kernel or host_spec, netns,
                     {"guests": hybrid, "mode": hybrid_mode, "backend": backend_version} if hybrid else None)


def _hybrid_of(state: dict) -> tuple[int, str | None]:
    h = state.get("hybrid") or {}
    return (h.get("guests") or 0, h.get("mode") if h.get("guests") else None)


def _hybrid_text(state: dict) -> str:
    h = state.get("hybrid") or {}
    return f" + {h['guests']} hybrid ({h.get('backend')}, {h.get('mode')})" if h.get("guests") else ""


def _runs_kernels(paths: LabPaths, state: dict, kernel: str | None, guest_kernel: str | None) -> bool:
    """Does the running lab run these SPECs (same spec words, or the versions they resolve to)?"""
    have = state.get("kernels") or {}
    want = {"host": kernel or "stable", "guests": guest_kernel or kernel or "stable"}
    for role, spec in want.items():
        if role == "guests" and not state.get("guests"):
            continue
        running = have.get(role) or {}
        if running.get("spec") != spec and running.get("version") != resolve(spec, paths.apt_dir).version:
            return False
    return True


def kernels_text(state: dict) -> str:
    """`kernel 7.2.13+deb14-amd64 (sid), guests 6.1.0-56-amd64 (stable)` from a lab state."""
    kernels = state.get("kernels") or {}
    parts = []
    for role, label in (("host", "kernel"), ("guests", "guests")):
        k = kernels.get(role)
        if k and (role == "host" or state.get("guests")):
            parts.append(f"{label} {k.get('release')} ({k.get('spec')} {k.get('version')})")
    return ", ".join(parts) or f"kernel {state.get('kernel') or '?'}"


def _boot(paths: LabPaths, guests: int, progress: Progress, port: int, host_spec: str, guest_spec: str,
          netns: bool = False, hybrid: dict | None = None) -> dict:
    t0 = time.monotonic()
    host: Kernel = ensure_kernel(paths, host_spec, progress)
    if netns:
        lab_netns.check_kernel(host.paths, host.release, f"{host.spec} {host.version}")
    guest: Kernel = host if guest_spec == host_spec else ensure_kernel(paths, guest_spec, progress)
    nhybrid = hybrid["guests"] if hybrid else 0
    names = [inv.L1, *inv.guest_names(guests), *inv.hybrid_names(nhybrid)]
    ensure_keys(paths, names)
    for k in dict.fromkeys(x.paths for x in (host, guest) if x is host or guests or nhybrid):
        ensure_initramfs(k, progress)
    port = _free_port(port)
    write_known_hosts(paths, inv.endpoints(port, guests, nhybrid))
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    consoles = [paths.l1_console] + [paths.guest_console(n) for n in names[1:]]
    tail = ConsoleTail(consoles, progress, time.monotonic())
    kernels = {"host": host.describe(), "guests": guest.describe()}
    state: dict[str, Any] = {"pid": None, "port": port, "guests": guests, "kernel": host.release, "kernels": kernels, "ready": False,
             "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "build_s": round(tail.started - t0, 1), "boot_s": {}, "inventory": str(paths.inventory),
             "netns": netns, "guest_netns": inv.guest_netns(guests, netns), "hybrid": hybrid}
    tail.say(f"starting l1 ({kernels_text(state)}, {guests} guests{', vsock netns' if netns else ''}"
             f"{_hybrid_text(state)}, ssh on 127.0.0.1:{port})")
    proc = qemu.start_l1(paths, port, guests, host.paths, guest.paths, netns=netns, hybrid=nhybrid,
                         hybrid_mode=hybrid["mode"] if hybrid else "shared")
    client = None
    try:
        state["pid"] = _wait_pid(paths, proc)
        _write_state(paths, state)
        _wait_l1(paths, proc, tail, port)
        state["boot_s"][inv.L1] = round(time.monotonic() - tail.started, 1)
        tail.say(f"l1 answers on 127.0.0.1:{port}")
        if guests or nhybrid:
            client = L1Client(paths, port)
            _wait_guests(paths, proc, tail, client, names[1:], state)
        state["ready"] = True
        state["inventory"] = str(inv.write_inventory(paths, port, guests, netns, nhybrid,
                                                     hybrid["mode"] if hybrid else "shared",
                                                     hybrid["backend"] if hybrid else ""))
        _write_state(paths, state)
        tail.say(f"lab ready: inventory {state['inventory']}")
        return state
    except BaseException:
        tail.say("boot failed: stopping l1")
        if client:
            client.close()
            client = None
        _stop_started(paths, proc)
        raise
    finally:
        if client:
            client.close()


def _wait_pid(paths: LabPaths, proc) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid = qemu.running_pid(paths)
        if pid:
            return pid
        if proc.poll() is not None:
            raise HarnessError(f"lab: qemu exited at start: {_qemu_log_tail(paths)}")
        time.sleep(0.1)
    raise HarnessError("lab: qemu wrote no pid file within 30 s")


def _qemu_log_tail(paths: LabPaths) -> str:
    try:
        lines = (paths.run_dir / "l1.qemu.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else "(no output)"


def _check_alive(paths: LabPaths, proc, tail: ConsoleTail) -> None:
    for line in tail.poll():
        if "FAILED" in line:
            raise HarnessError(f"lab: {line}")
    if proc.poll() is not None:
        raise HarnessError(f"lab: l1's qemu exited ({proc.returncode}): {_qemu_log_tail(paths)}")


def _wait_l1(paths: LabPaths, proc, tail: ConsoleTail, port: int) -> None:
    deadline = time.monotonic() + L1_TIMEOUT
    while time.monotonic() < deadline:
        _check_alive(paths, proc, tail)
        if any(l.startswith("l1: sshd ready") for l in tail.seen) and tcp_banner("127.0.0.1", port, 3):
            return
        time.sleep(0.5)
    raise HarnessError(f"lab: l1 gave no SSH banner within {L1_TIMEOUT:.0f} s (console: {paths.l1_console})")


def _wait_guests(paths: LabPaths, proc, tail: ConsoleTail, client: L1Client, names: list[str], state: dict) -> None:
    """One watcher thread per guest: after its console says sshd is up, read its banner through l1.

    The first banner from a nested guest can take tens of seconds (sshd forks and re-executes
    itself under nested TCG), so each attempt waits up to a minute, guests in parallel.
    """
    deadline = time.monotonic() + GUESTS_TIMEOUT
    ready: dict[str, float] = {}

    def watch(name: str) -> None:
        port = inv.GUEST_PORT_BASE + inv.guest_cid(name)
        while time.monotonic() < deadline:
            try:
                if any(l.startswith(f"{name}: sshd ready") for l in list(tail.seen)) and \
                        client.guest_banner(port, timeout=60):
                    ready[name] = time.monotonic()
                    return
            except Exception:  # l1's connection closed under us: the boot is being abandoned
                return
            time.sleep(2)

    watchers = [threading.Thread(target=watch, args=(n,), daemon=True, name=f"lab-wait-{n}") for n in names]
    for t in watchers:
        t.start()
    last_note = time.monotonic()
    while len(state["boot_s"]) < len(names) + 1 and time.monotonic() < deadline:
        _check_alive(paths, proc, tail)
        for name in names:
            if name in ready and name not in state["boot_s"]:
                state["boot_s"][name] = round(ready[name] - tail.started, 1)
                tail.say(f"{name} answers through l1")
        pending = [n for n in names if n not in state["boot_s"]]
        if pending and time.monotonic() - last_note > 30:
            tail.say(f"waiting for {', '.join(pending)} (nested TCG boot takes 3-5 min)")
            last_note = time.monotonic()
        time.sleep(0.5)
    pending = [n for n in names if n not in state["boot_s"]]
    if pending:
        raise HarnessError(f"lab: {', '.join(pending)} not ready within {GUESTS_TIMEOUT:.0f} s "
                           f"(consoles kept in {paths.root / 'last-failed-run'})")


def _stop_started(paths: LabPaths, proc) -> None:
    qemu.stop_l1(paths)
    if proc.poll() is None:  # the timeout wrapper, if qemu never wrote its pid file
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
    _keep_failed_run(paths)


def _keep_failed_run(paths: LabPaths) -> None:
    """Keep the consoles and logs of a failed boot in <cache>/last-failed-run for a post-mortem."""
    failed = paths.root / "last-failed-run"
    shutil.rmtree(failed, ignore_errors=True)
    if paths.run_dir.exists():
        paths.run_dir.rename(failed)


def _remove_run(paths: LabPaths) -> None:
    if paths.run_dir.exists():
        shutil.rmtree(paths.run_dir, ignore_errors=True)


def status(paths: LabPaths | None = None) -> dict:
    paths = paths or LabPaths.default()
    state = read_state(paths) or {}
    pid = qemu.running_pid(paths)
    return {
        "running": pid is not None, "pid": pid, "ready": bool(state.get("ready")) and pid is not None,
        "ssh": bool(pid and state.get("port") and tcp_banner("127.0.0.1", state["port"], 3)),
        "port": state.get("port"), "guests": state.get("guests"), "kernel": state.get("kernel"),
        "kernels": node_kernels(state) if pid else {},
        "netns": node_netns(state) if pid else {},
        "vsock": node_vsock_kinds(state) if pid else {}, "hybrid": state.get("hybrid"),
        "boot_s": state.get("boot_s"), "started_at": state.get("started_at"),
        "inventory": state.get("inventory") if pid else None, "cache": str(paths.root),
    }


def node_kernels(state: dict) -> dict[str, dict]:
    """node -> {spec, version, release} of the kernel it boots (l1: the host's, vmNN: the guests')."""
    kernels = state.get("kernels") or {}
    out = {inv.L1: kernels.get("host") or {"release": state.get("kernel")}}
    for name in inv.guest_names(state.get("guests") or 0) + inv.hybrid_names(_hybrid_of(state)[0]):
        out[name] = kernels.get("guests") or out[inv.L1]
    return out


def node_netns(state: dict) -> dict[str, dict]:
    """node -> {netns, mode} for what `lab up --netns` placed: each guest, and l1 in each namespace."""
    if not state.get("netns"):
        return {}
    placed = state.get("guest_netns") or {}
    out = {inv.L1: {"netns": None, "mode": "global"}}  # the init namespace: global, child_ns_mode never written
    for ns, mode in lab_netns.NAMESPACES.items():
        out[lab_netns.node_name(inv.L1, ns)] = {"netns": ns, "mode": mode}
    for guest, ns in placed.items():
        out[guest] = {"netns": ns, "mode": lab_netns.NAMESPACES[ns]}
    return out


def node_vsock_kinds(state: dict) -> dict[str, str]:
    """node -> how its vsock is provided: the kernel's vhost_vsock, or the vhost-user backend."""
    nhybrid, mode = _hybrid_of(state)
    backend = (state.get("hybrid") or {}).get("backend") or "vhost-device-vsock"
    out = {inv.L1: "host: vhost_vsock + vsock_loopback (kernel, CID 2)"}
    if nhybrid:
        out[inv.L1_HYBRID] = f"host: hybrid, a Unix socket per guest ({backend}, {mode} backend)"
    for name in inv.guest_names(state.get("guests") or 0):
        out[name] = f"guest: vhost-vsock-device (kernel vhost), cid {inv.guest_cid(name)}"
    for name in inv.hybrid_names(nhybrid):
        out[name] = f"guest: vhost-user-vsock-device ({backend}), cid {inv.guest_cid(name)}"
    return out


def down(progress: Progress = plain_progress, paths: LabPaths | None = None, purge: bool = False) -> int | None:
    """Stop our qemu (L2s die with L1) and remove the run folder; purge also drops the build cache."""
    paths = paths or LabPaths.default()
    with _locked(paths):
        pid = qemu.stop_l1(paths)
        progress(f"stopped l1 qemu (pid {pid})" if pid else "no lab qemu running")
        _remove_run(paths)
        if purge:
            for p in (paths.kernels_dir, paths.apt_dir, paths.keys_dir, paths.root / "kernel"):
                shutil.rmtree(p, ignore_errors=True)  # kernel/: the one-kernel layout before issue 15
            for p in (paths.root / "initramfs.cpio", paths.root / "initramfs.sha256"):
                p.unlink(missing_ok=True)
            progress(f"removed the lab cache in {paths.root}")
        return pid
