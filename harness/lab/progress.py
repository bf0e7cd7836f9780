"""Progress while the lab boots: the guests' "hvlab:" console lines, with the time since start.

The guests' inits print `hvlab: <node>: <what>` on their serial consoles, which qemu writes into
the lab's run folder (L2's through L1's 9p share), so the controller just tails those files.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

Progress = Callable[[str], None]


def plain_progress(line: str) -> None:
    print(line, flush=True)


class ConsoleTail:
    def __init__(self, files: list[Path], progress: Progress, started: float):
        self.files = files
        self.offsets = {f: 0 for f in files}
        self.progress = progress
        self.started = started
        self.seen: list[str] = []

    def say(self, text: str) -> None:
        self.progress(f"[{time.monotonic() - self.started:6.1f}s] {text}")

    def poll(self) -> list[str]:
        """Report new hvlab: lines; returns them (without the prefix)."""
        new = []
        for f in self.files:
            try:
                with open(f, "rb") as fh:
                    fh.seek(self.offsets[f])
                    data = fh.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            self.offsets[f] += end
            for raw in data[:end].splitlines():
                line = raw.decode(errors="replace").strip()
                if line.startswith("hvlab: "):
                    line = line[len("hvlab: "):]
                    new.append(line)
                    self.seen.append(line)
                    self.say(line)
                elif "Kernel panic" in line or "not syncing" in line:
                    new.append("FAILED: " + line)
                    self.say(f"{f.name}: {line}")
        return new
