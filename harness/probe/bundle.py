"""The probe package as one zipapp file, built on the controller (never shipped itself).

A zipapp (PEP 441, what stdlib `zipapp` makes: a zip with `__main__.py` at its root, runnable as
`python probe.pyz ...`) holds this package's modules under PACKAGE plus a root `__main__.py`.
The bytes depend on the sources only -- fixed entry order, timestamps, permissions, no
compression -- so one checkout always ships the same file and the node's copy is checked
against one sha256.
"""
from __future__ import annotations

import atexit
import hashlib
import io
import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "hvsock_probe"  # the package's name inside the zipapp
FILE_NAME = "probe.pyz"
SHEBANG = b"#!/usr/bin/env python3\n"
NOT_SHIPPED = {"bundle.py"}
ENTRY = ("# hvsock-matrix probe (zipapp): python probe.pyz {serve|connect|info|session} ...\n"
         f"import sys\n\nfrom {PACKAGE}.cli import main\n\nsys.exit(main())\n")
_EPOCH = (1980, 1, 1, 0, 0, 0)

_lock = threading.Lock()
_built: dict[str, object] = {}


def sources() -> list[Path]:
    """The modules shipped, in a fixed order."""
    return sorted(p for p in HERE.glob("*.py") if p.name not in NOT_SHIPPED)


def _entry(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.create_system = 3  # unix, whatever builds it
    zf.writestr(info, data)


def build() -> bytes:
    """The zipapp's bytes (deterministic for one set of sources)."""
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        _entry(zf, "__main__.py", ENTRY.encode("utf-8"))
        for path in sources():
            _entry(zf, f"{PACKAGE}/{path.name}", path.read_bytes())
    return buf.getvalue()


def probe_bytes() -> bytes:
    """The zipapp's bytes, built once per process."""
    with _lock:
        data = _built.get("bytes")
        if data is None:
            data = _built["bytes"] = build()
        return data  # type: ignore[return-value]


def probe_sha256() -> str:
    return hashlib.sha256(probe_bytes()).hexdigest()


def probe_file() -> Path:
    """The zipapp as a file on the controller (for transports that copy a file, and local nodes).

    Written once per process into a private (0700) temporary folder that goes at exit: a file in a
    shared place could be swapped by another local user between our check and a node's run.
    """
    with _lock:
        path = _built.get("path")
        if isinstance(path, Path) and path.exists():
            return path
    data = probe_bytes()
    with _lock:
        path = _built.get("path")
        if isinstance(path, Path) and path.exists():
            return path
        folder = Path(tempfile.mkdtemp(prefix="hvsock-matrix-probe."))
        atexit.register(shutil.rmtree, folder, True)
        target = folder / FILE_NAME
        tmp = folder / (FILE_NAME + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        _built["path"] = target
        return target
