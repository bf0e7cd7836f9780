"""PowerShell as Windows nodes receive it: `-EncodedCommand` text and small, pinned script pieces.

Why -EncodedCommand: base64 of UTF-16LE survives every quoting layer between the controller and
the node (PAExec's argument string, cmd.exe under Windows OpenSSH) unchanged, so a script is sent
exactly as written here and the tests can pin it byte for byte.
"""
from __future__ import annotations

import base64

POWERSHELL = "powershell.exe"
POWERSHELL_FLAGS = ("-NoProfile", "-NonInteractive")

# CreateProcess limits a command line to 32767 UTF-16 units; keep well below it.
MAX_ENCODED_CHARS = 30000


def encode_command(script: str) -> str:
    """The text PowerShell's -EncodedCommand expects: base64 of the script in UTF-16LE."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def decode_command(encoded: str) -> str:
    """Inverse of encode_command (fakes and tests read what a node would run)."""
    return base64.b64decode(encoded).decode("utf-16-le")


def powershell_argv(script: str) -> list[str]:
    """argv that runs `script` on a Windows node; raises ValueError when it is too long to send."""
    encoded = encode_command(script)
    if len(encoded) > MAX_ENCODED_CHARS:
        raise ValueError(f"PowerShell script too long for one command line ({len(encoded)} encoded chars)")
    return [POWERSHELL, *POWERSHELL_FLAGS, "-EncodedCommand", encoded]


def ps_quote(text: str) -> str:
    """A PowerShell single-quoted literal: nothing inside is expanded; ' is doubled."""
    return "'" + str(text).replace("'", "''") + "'"


def output_lines(stdout: str) -> list[str]:
    """Non-empty, stripped lines of a PowerShell run (CRLF or LF)."""
    return [line.strip() for line in stdout.replace("\r\n", "\n").split("\n") if line.strip()]
