"""psexec: Windows nodes reached over SMB with pypsexec (PAExec service), no agent installed.

One idea per file:
- clients.py: the pool of pypsexec Clients (one per process per host), acquired, released, retired;
- files.py: the node's files through its admin share (smbclient), and admin-share paths;
- process.py: background processes (an asynchronous PowerShell wrapper whose output is read over SMB);
- transport.py: PsexecTransport, the Transport contract on top of those three;
- paexec_sweep.py: a killed run's PAExec services and executables, removed.

The factories tests replace (clients.client_factory, clients.files_factory) and the timing knobs
(clients.CALL_GRACE, process.POLL_START, process.KILL_GRACE) live in their own modules and are
deliberately not re-exported here: a monkeypatch of this package would then fail loudly instead of
patching nothing.
"""
from __future__ import annotations

from harness.transports.base import PROBE_NAME
from harness.transports.psexec.clients import SMB_PORT, failure_text, shared_clients
from harness.transports.psexec.files import SmbFiles, admin_share_path
from harness.transports.psexec.process import PsexecProcess, spawn_script
from harness.transports.psexec.transport import (
    CREATE_PROCESS_LIMIT,
    DEFAULT_PYTHON,
    DEFAULT_WORKDIR,
    DEFAULT_WORKDIR_BASE,
    RUN_DIR_NAME,
    PsexecTransport,
)

__all__ = [
    "CREATE_PROCESS_LIMIT", "DEFAULT_PYTHON", "DEFAULT_WORKDIR", "DEFAULT_WORKDIR_BASE", "PROBE_NAME",
    "RUN_DIR_NAME", "SMB_PORT", "PsexecProcess", "PsexecTransport", "SmbFiles", "admin_share_path",
    "failure_text", "shared_clients", "spawn_script",
]
