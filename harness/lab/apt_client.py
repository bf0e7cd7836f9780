"""The ordinary apt client, either the machine's own or one with a private configuration.

The private one (for kernels outside the machine's suites: backports, sid) keeps its sources
list, package lists and cache under the lab cache (Dir::Etc::sourcelist, Dir::Etc::sourceparts=-,
Dir::State, Dir::Cache), so the machine's own sources and lists are never touched.
"""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.lab.debian_sources import AptSource

LISTS_MAX_AGE_S = 6 * 3600  # the private lists are refreshed when older (sid moves daily)


def run_tool(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    """Run an apt/dpkg tool; a failure is one line naming the command and its last output line."""
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"lab: `{' '.join(argv[:2])} ...` did not finish within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise HarnessError(f"lab: {argv[0]} not found") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise HarnessError(f"lab: `{' '.join(argv)}` failed: {tail[0]}")
    return proc.stdout


@dataclass(frozen=True)
class Apt:
    """apt-get / apt-cache with extra `-o` options (none: the machine's own configuration)."""

    options: tuple[str, ...] = ()
    label: str = "this machine's apt"

    def argv(self, tool: str, *args: str) -> list[str]:
        return [tool, *(x for opt in self.options for x in ("-o", opt)), *args]

    def madison(self, package: str) -> list[tuple[str, str]]:
        """(version, suite) of every version apt knows, newest first (apt's own order)."""
        out = run_tool(self.argv("apt-cache", "madison", package))
        rows = []
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[0] == package:
                m = re.match(r"\S+\s+([^/\s]+)/", parts[2])
                if m:
                    rows.append((parts[1], m.group(1)))
        return rows

    def depends(self, package: str, version: str) -> list[str]:
        """The Depends and Pre-Depends of one exact version, alternatives flattened."""
        out = run_tool(self.argv("apt-cache", "show", f"{package}={version}"))
        stanza = out.split("\n\n", 1)[0]
        deps: list[str] = []
        for m in re.finditer(r"^(?:Pre-)?Depends:\s*(.*(?:\n .*)*)", stanza, re.M):
            deps += [d.strip() for d in re.split(r"[,|]", m.group(1).replace("\n", " ")) if d.strip()]
        return deps

    def download(self, packages: list[str], dest: Path) -> None:
        """`apt-get download pkg=version ...` into dest (no install, nothing else changes)."""
        dest.mkdir(parents=True, exist_ok=True)
        run_tool(self.argv("apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", *packages), cwd=dest)


@dataclass
class PrivateApt:
    """A private apt configuration under `root`: the given sources only, its own lists and cache."""

    root: Path
    sources: list[AptSource]
    extra: list[tuple[AptSource, tuple[str, ...]]] = field(default_factory=list)  # (mirror, suites)

    def sources_text(self) -> str:
        lines = [s.line() for s in self.sources] + [s.line(suites) for s, suites in self.extra]
        return "# written by hvsock-matrix for the lab's kernels only; apt on this machine never reads it\n" + \
            "\n".join(lines) + "\n"

    @property
    def apt(self) -> Apt:
        r = self.root
        return Apt((f"Dir::Etc::sourcelist={r / 'sources.list'}", "Dir::Etc::sourceparts=-",
                    f"Dir::Etc::preferencesparts={r / 'preferences.d'}",
                    f"Dir::State={r / 'state'}", f"Dir::State::status={r / 'state' / 'status'}",
                    f"Dir::Cache={r / 'cache'}", "Acquire::Languages=none"),
                   label=f"the lab's private apt ({r})")

    def ensure_lists(self, progress=print, max_age_s: float = LISTS_MAX_AGE_S) -> Apt:
        """Write the private sources; `apt-get update` when they changed or the lists are stale."""
        for d in ("state/lists/partial", "cache/archives/partial", "preferences.d"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "state" / "status").touch()
        text = self.sources_text()
        sources = self.root / "sources.list"
        stamp = self.root / "state" / "updated"
        fresh = (sources.exists() and sources.read_text() == text and stamp.exists()
                 and time.time() - stamp.stat().st_mtime < max_age_s)
        if fresh:
            return self.apt
        sources.write_text(text)
        progress(f"apt-get update ({self.apt.label})")
        run_tool(self.apt.argv("apt-get", "-q", "-o", "APT::Sandbox::User=root", "update"))
        stamp.touch()
        return self.apt
