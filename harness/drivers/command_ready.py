"""A command template's `ready:` pattern: the server line that means "listening now".

Why a pattern and not the first line: the documents' ConsoleApp1 prints `Process ID: N` before
Bind() and Listen(), so its first line says nothing about listening (a Bind that throws would be
taken for a listener and the refused client read as X).
"""
from __future__ import annotations

import re
from collections.abc import Callable

MAX_PATTERN = 500  # characters: a line pattern, not a program


def check_ready_pattern(value: object) -> str | None:
    """The pattern as written, or None when absent; ValueError (one line) when it is not a usable regex."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("driver ready: must be a non-empty regular expression (a line of the server's output)")
    if len(value) > MAX_PATTERN:
        raise ValueError(f"driver ready: pattern longer than {MAX_PATTERN} characters")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"driver ready: not a regular expression ({exc})") from None
    return value


def ready_matcher(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda line: compiled.search(line) is not None
