"""This machine's own Debian apt sources, read (never changed) to find its mirror and codename.

The lab downloads other kernels (backports, sid) from the same mirror the machine already uses,
so no mirror host is ever written in the code: it comes from /etc/apt/sources.list (one-line
format) and /etc/apt/sources.list.d/*.list / *.sources (deb822), as apt itself reads them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

ETC_APT = Path("/etc/apt")
OS_RELEASE = Path("/etc/os-release")


@dataclass(frozen=True)
class AptSource:
    """One `deb` source: a URI, its suites and components, and the keyring it is signed by."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None

    def line(self, suites: tuple[str, ...] | None = None) -> str:
        """The one-line form (for a private sources.list), optionally for other suites."""
        opts = f" [signed-by={self.signed_by}]" if self.signed_by else ""
        return "\n".join(f"deb{opts} {self.uri} {suite} {' '.join(self.components)}"
                         for suite in (suites or self.suites))


def _one_line_sources(text: str) -> list[AptSource]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        signed_by = None
        m = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        rest = line[4:].strip()
        if m:
            rest = m.group(2)
            for opt in m.group(1).split():
                if opt.startswith("signed-by="):
                    signed_by = opt.split("=", 1)[1]
        words = rest.split()
        if len(words) >= 2:
            out.append(AptSource(words[0], (words[1],), tuple(words[2:]), signed_by))
    return out


def _deb822_sources(text: str) -> list[AptSource]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1].isspace() and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri, tuple(fields.get("suites", "").split()),
                                 tuple(fields.get("components", "").split()), fields.get("signed-by") or None))
    return out


def machine_sources(etc: Path = ETC_APT) -> list[AptSource]:
    """Every enabled `deb` source of this machine, in apt's reading order."""
    sources: list[AptSource] = []
    main = etc / "sources.list"
    if main.is_file():
        sources += _one_line_sources(main.read_text(errors="replace"))
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                sources += _one_line_sources(path.read_text(errors="replace"))
            elif path.suffix == ".sources":
                sources += _deb822_sources(path.read_text(errors="replace"))
    return sources


def codename(os_release: Path = OS_RELEASE) -> str:
    """This machine's Debian codename (bookworm), from /etc/os-release."""
    try:
        text = os_release.read_text()
    except OSError as exc:
        raise HarnessError(f"lab: cannot read {os_release}: {exc.strerror}") from None
    m = re.search(r'^VERSION_CODENAME="?([a-z]+)"?\s*$', text, re.M)
    if not m:
        raise HarnessError(f"lab: {os_release} names no VERSION_CODENAME (is this Debian?)")
    return m.group(1)


def debian_mirror(sources: list[AptSource], suite: str) -> AptSource:
    """The source that serves `suite` (the machine's codename): its URI is the mirror to reuse."""
    for source in sources:
        if suite in source.suites and "main" in source.components:
            return source
    raise HarnessError(f"lab: no apt source of this machine serves `{suite} main` "
                       f"(read {ETC_APT}/sources.list and sources.list.d)")
