"""The one bounded way the tool reads a text file it is given: YAML (harness/yamlfile.py) and
results files (harness/results/reader.py) alike.

Size and type are checked before a byte is read (a 2 GB file, a FIFO or /dev/zero costs nothing),
at most `max_bytes` are read even if the file grows meanwhile, and only UTF-8 is text (an initial
BOM dropped); UTF-16/32 and other encodings are named in one line with where. Every refusal is an
InputError("path:line", message).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from harness.errors import InputError

_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
         (b"\xfe\xff", "UTF-16"))


def read_text(path: str | Path, max_bytes: int, what: str = "file", shown_as: str | None = None) -> str:
    """The text of a regular file of at most max_bytes, in UTF-8; `shown_as` names it in messages."""
    real = str(path)
    where = shown_as or real
    try:
        st = os.stat(real)
    except OSError as err:
        raise InputError(f"{where}:1", f"cannot read file: {err.strerror or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{where}:1", f"is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{where}:1", "not a regular file (a FIFO, socket or device is never read)")
    if st.st_size > max_bytes:
        raise InputError(f"{where}:1", f"file of {st.st_size} bytes is over the {max_bytes} byte limit")
    try:  # O_NONBLOCK: a FIFO swapped in after the stat cannot block the read
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as err:
        raise InputError(f"{where}:1", f"cannot read file: {err.strerror or err}") from None
    if len(raw) > max_bytes:
        raise InputError(f"{where}:1", f"file is over the {max_bytes} byte limit")
    return decode(where, raw)


def decode(where: str, raw: bytes) -> str:
    """UTF-8 (an initial BOM dropped, CRLF kept); UTF-16/32 and other encodings refused in one line."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise InputError(f"{where}:1", f"{name} text; save the file as UTF-8")
    if raw[:1] == b"\x00" or raw[1:2] == b"\x00":
        raise InputError(f"{where}:1", "UTF-16 text without a BOM (NUL bytes); save the file as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise InputError(f"{where}:{line}", f"not UTF-8 text (byte 0x{raw[err.start]:02x})") from None
