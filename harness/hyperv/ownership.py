"""Which controller run owns what the harness left on a Windows host, and whether that run still lives.

Why: a killed run leaves GUID registrations and PAExec services behind. The next normal run removes
them -- but only when their owner is provably dead: a run on this same controller host whose
process is gone (pid absent, or reused by a process that started at another time). Anything owned
by another controller host, or by a live run, is never touched.
"""
from __future__ import annotations

import os
import re
import socket

_PAEXEC_NAME = re.compile(r"^PAExec-(\d+)-(.+?)(?:\.exe)?$", re.I)


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_tag(pid: int | None = None) -> str:
    """`<controller host>:<pid>:<start ticks>` of this run, written next to everything it creates."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '0'}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tag_is_dead(tag: str) -> bool:
    """True only for a run of this controller host whose process is gone (or whose pid was reused)."""
    parts = (tag or "").split(":")
    if len(parts) < 3 or not parts[-2].isdigit():
        return False  # unknown format: not ours to judge
    host, pid, ticks = ":".join(parts[:-2]), int(parts[-2]), parts[-1]
    if host != socket.gethostname() or pid == os.getpid():
        return False
    if not pid_alive(pid):
        return True
    return ticks != "0" and _start_ticks(pid) not in (None, ticks)


def stale_paexec_names(names: list[str]) -> list[str]:
    """PAExec services/exes named by pypsexec after a controller process of THIS host that is gone.

    pypsexec names them `PAExec-<pid>-<socket.gethostname()>` (client.py Client.__init__); without a
    start time, a reused pid counts as alive: such an entry waits for a later run."""
    host = socket.gethostname()
    out = []
    for name in names:
        match = _PAEXEC_NAME.match(name.strip())
        if not match or match.group(2) != host:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not pid_alive(pid):
            out.append(name.strip())
    return out
