"""Reading what tools print on the nodes: netsh's Winsock catalog, version strings, /proc/modules."""
from __future__ import annotations

import re

AF_HYPERV = 34


def parse_winsock_catalog(text: str) -> list[dict[str, str]]:
    """`netsh winsock show catalog` -> one dict per provider entry ("Address Family" -> "34", ...).

    Entries are blocks of `Key:   value` lines separated by blank lines (English Windows)."""
    entries: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            if current:
                entries.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep and value.strip() and not line.startswith("-"):
            current[key.strip()] = value.strip()
    if current:
        entries.append(current)
    return entries


def hyperv_raw_entry(text: str) -> dict[str, str] | None:
    """The "Hyper-V RAW" provider with address family 34, if the catalog lists it."""
    for entry in parse_winsock_catalog(text):
        if "Hyper-V RAW" in entry.get("Description", "") and entry.get("Address Family") == str(AF_HYPERV):
            return entry
    return None


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """`3.11.2`, `Python 3.12.1`, `socat version 1.7.4.4 on ...`, `1.7.3.3` -> a tuple of ints."""
    if not text:
        return None
    match = re.search(r"(\d+(?:\.\d+)+)", str(text))
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def parse_proc_modules(text: str) -> list[str]:
    """Module names from /proc/modules or lsmod output (lsmod's header line left out)."""
    names = []
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] != "Module":
            names.append(fields[0])
    return names
