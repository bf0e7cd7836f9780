"""Reading what tools print: version strings, /proc/modules."""
from __future__ import annotations

import re


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
