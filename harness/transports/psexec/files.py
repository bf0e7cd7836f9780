"""Files on a Windows node through its admin share (C$), with smbprotocol's high-level smbclient API."""
from __future__ import annotations

import contextlib
import errno
import re
from pathlib import PureWindowsPath

_DRIVE_RE = re.compile(r"^([A-Za-z]):\\(.*)$")


def is_drive_path(path: str) -> bool:
    r"""`C:\dir` or `d:/dir`: an absolute Windows path with a drive letter."""
    return bool(_DRIVE_RE.match(path.replace("/", "\\")))


def admin_share_path(host: str, windows_path: str) -> str:
    r"""`C:\Windows\Temp\x` on `host` -> `\\host\C$\Windows\Temp\x` (the admin share)."""
    match = _DRIVE_RE.match(windows_path.replace("/", "\\"))
    if not match:
        raise ValueError(f"not an absolute Windows path with a drive letter: {windows_path!r}")
    return f"\\\\{host}\\{match.group(1).upper()}$\\{match.group(2)}"


class SmbFiles:
    """Files on a Windows node through its admin share, with smbprotocol's high-level smbclient API.

    smbclient keys its connections by `server:port` (smbclient/_pool.py register_session/get_smb_tree),
    and every call without `port=` means 445: each call here passes the node's port and this node's own
    connection cache, so no call ever opens a second, credential-less connection to port 445.
    """

    def __init__(self, server: str, username: str | None, password: str | None, port: int, timeout: float):
        import smbclient

        self._smb = smbclient
        self.server = server
        self._cache: dict = {}
        self._kw = {"port": port, "connection_cache": self._cache}
        self._aborted = False
        smbclient.register_session(server, username=username, password=password, encrypt=True,
                                   connection_timeout=int(max(1, timeout)), **self._kw)

    def write_bytes(self, unc: str, data: bytes) -> None:
        self._check_live()
        self._makedirs(PureWindowsPath(unc).parent)
        with self._smb.open_file(unc, mode="wb", **self._kw) as handle:
            handle.write(data)

    def _makedirs(self, directory: PureWindowsPath) -> None:
        """Each directory below the share, top down. Not smbclient.makedirs: when the share itself is
        missing it loops forever (smbclient/_os.py makedirs: ntpath.dirname of the share root is itself)."""
        current = PureWindowsPath(directory.anchor)
        for part in directory.parts[1:]:
            current = current / part
            try:
                self._smb.mkdir(str(current), **self._kw)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise

    def read_from(self, unc: str, offset: int) -> bytes | None:
        """Bytes from `offset` on, or None when the file does not exist (yet). Opened sharing rwd:
        the wrapper is still writing it."""
        self._check_live()
        try:
            with self._smb.open_file(unc, mode="rb", share_access="rwd", **self._kw) as handle:
                handle.seek(offset)
                return handle.read()
        except OSError as exc:  # smbprotocol's SMBOSError is an OSError, not a FileNotFoundError
            if exc.errno == errno.ENOENT:
                return None
            raise

    def remove(self, unc: str) -> None:
        self._check_live()
        try:
            self._smb.remove(unc, **self._kw)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def remove_tree(self, unc: str) -> None:
        """A folder and all it holds (smbclient.shutil.rmtree); what cannot go (a file still open on the
        node) stays, and a folder that is already gone is fine."""
        self._check_live()
        from smbclient import shutil as smb_shutil

        smb_shutil.rmtree(unc, ignore_errors=True, **self._kw)

    def _check_live(self) -> None:
        """After abort() smbclient would quietly open a new connection without our credentials
        (smbclient/_pool.py register_session on a closed transport): refuse instead."""
        if self._aborted:
            raise ConnectionAbortedError(f"the SMB connection to {self.server} was closed after it stalled")

    def close(self) -> None:
        """Closes this node's SMB connections (smbclient.reset_connection_cache on our own cache)."""
        self._smb.reset_connection_cache(fail_on_error=False, connection_cache=self._cache)

    def abort(self) -> None:
        """Closes the sockets under this node's SMB connections without a word to the server, so a call
        blocked on a silent server ends (smbprotocol connection.py Connection.disconnect(close=False))."""
        self._aborted = True
        for connection in list(self._cache.values()):
            with contextlib.suppress(Exception):  # already closed
                connection.disconnect(close=False)
