"""Windows PowerShell's CLIXML error stream, turned back into the text a person would have seen.

Why: powershell.exe 5.1 started with -EncodedCommand and a redirected stderr (PAExec, Windows
OpenSSH without a tty) writes its error stream as `#< CLIXML` followed by one or more
`<Objs>` documents; the error text sits in `<S S="Error">` elements, with characters XML cannot
carry written as `_xHHHH_` (e.g. `_x000D__x000A_` for CRLF, `_x001B_` for ESC). Progress records
(`<Obj S="progress">`, "Preparing modules for first use.") are noise. Without this, every
PowerShell failure reads `#< CLIXML`.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

MARKER = "#< CLIXML"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_OBJS = re.compile(r"<Objs\b.*?</Objs>", re.S)
_MAX_CHARS = 1_000_000  # bounded work on whatever a node sends


def _unescape(text: str) -> str:
    """PowerShell's XML escaping (_xHHHH_, UTF-16 code units) undone; surrogate pairs joined."""
    units = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return units.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def error_text(stderr: str) -> str:
    """The error stream as plain text when `stderr` is CLIXML; `stderr` unchanged otherwise."""
    if MARKER not in stderr[:200]:
        return stderr
    before, _, rest = stderr.partition(MARKER)
    parts: list[str] = []
    for document in _OBJS.findall(rest[:_MAX_CHARS]):
        try:
            root = ElementTree.fromstring(document)
        except ElementTree.ParseError:
            continue
        for element in root.iter():
            if element.tag.rsplit("}", 1)[-1] == "S" and element.get("S") == "Error":
                parts.append(_unescape(element.text or ""))
    if not parts:
        return before.strip()
    return _ANSI.sub("", before + "".join(parts)).replace("\r\n", "\n").strip()


def first_error_line(stderr: str, stdout: str = "") -> str:
    """The first meaningful line of a failed PowerShell run, for a one-line message."""
    for text in (error_text(stderr or ""), stdout or ""):
        for line in text.splitlines():
            if line.strip():
                return line.strip()
    return "no output"
