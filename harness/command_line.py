"""One command line <-> argv, by the rules of the node that will parse it.

POSIX nodes: shlex (the shell's words and quotes). Windows nodes: a program receives ONE command
line and its C runtime splits it (Microsoft Learn, "Parsing C++ command-line arguments" / "Parsing C
command-line arguments", and CommandLineToArgvW in shellapi.h, which follows the same rules):

- arguments are separated by spaces or tabs;
- the first argument, the program name, is taken as it is up to the first space or tab outside
  double quotes; quotes only group (they are dropped) and backslashes are plain characters;
- in later arguments, a double-quoted part is one argument whatever it holds; a quoted part may be
  embedded in an argument (`a"b c"d` is `ab cd`); a quote left open runs to the end of the line;
- backslashes are literal unless they come right before a double quote: 2n backslashes + `"` give
  n backslashes and a quote that opens or closes; 2n+1 backslashes + `"` give n backslashes and a
  literal `"`;
- inside a quoted part, `""` gives a literal `"` and ends the quoted part (the table of that page:
  `a"b"" c d` -> `ab"`, `c`, `d`).

So `C:\\temp\\ConsoleApp1.exe /server any` stays `C:\\temp\\ConsoleApp1.exe`, `/server`, `any`. The
reverse, argv -> one command line, is CPython's subprocess.list2cmdline (Lib/subprocess.py, written to
the same Microsoft page): join_windows(argv) splits back to argv for every argv whose program name
holds no double quote (a Windows file name never does).
"""
from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

_BLANKS = " \t"


def split_windows(text: str) -> list[str]:
    """argv as a Windows program's C runtime would split `text` (its whole command line)."""
    text = text.strip(_BLANKS)
    if not text:
        return []
    args: list[str] = []
    i, n = 0, len(text)
    # argv[0]: quotes group and vanish, backslashes are plain
    name: list[str] = []
    quoted = False
    while i < n and (quoted or text[i] not in _BLANKS):
        if text[i] == '"':
            quoted = not quoted
        else:
            name.append(text[i])
        i += 1
    args.append("".join(name))
    while True:
        while i < n and text[i] in _BLANKS:
            i += 1
        if i >= n:
            return args
        current: list[str] = []
        quoted = False
        while i < n and (quoted or text[i] not in _BLANKS):
            c = text[i]
            if c == "\\":
                run = i
                while i < n and text[i] == "\\":
                    i += 1
                count = i - run
                if i < n and text[i] == '"':
                    current.append("\\" * (count // 2))
                    if count % 2:
                        current.append('"')
                        i += 1
                    # even: the quote is a delimiter, handled on the next pass
                else:
                    current.append("\\" * count)
                continue
            if c == '"':
                if quoted and i + 1 < n and text[i + 1] == '"':
                    current.append('"')  # "" inside quotes: a literal quote, and the quoted part ends
                    quoted = False
                    i += 2
                    continue
                quoted = not quoted
                i += 1
                continue
            current.append(c)
            i += 1
        args.append("".join(current))


def join_windows(argv: Sequence[str]) -> str:
    """One Windows command line for argv (subprocess.list2cmdline: the same Microsoft rules)."""
    return subprocess.list2cmdline(list(argv))


def quote_windows(value: str) -> str:
    """`value` as one argument on a Windows command line."""
    return subprocess.list2cmdline([value])


def split_for(os_name: str, text: str) -> list[str]:
    """argv from a command line written for a node running `os_name` ("windows" or a POSIX one)."""
    return split_windows(text) if os_name == "windows" else shlex.split(text)


def quote_for(os_name: str, value: str) -> str:
    return quote_windows(value) if os_name == "windows" else shlex.quote(value)


def join_for(os_name: str, argv: Sequence[str]) -> str:
    """argv as one line a reader of that node's commands would write (for records and logs)."""
    return join_windows(argv) if os_name == "windows" else shlex.join(argv)
