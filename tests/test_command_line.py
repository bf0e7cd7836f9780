"""A template's command line -> argv by the node's rules (harness/command_line.py), and back.

The Windows examples are the table of Microsoft Learn's "Parsing C command-line arguments" (the
program name first, since the runtime treats it apart); the reverse is CPython's list2cmdline.
"""
from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.command_line import join_windows, quote_for, split_for, split_windows


@pytest.mark.parametrize("line, argv", [
    # Microsoft's table: command-line input -> argv[1], argv[2], argv[3]
    ('"a b c" d e', ["a b c", "d", "e"]),
    ('"ab\\"c" "\\\\" d', ['ab"c', "\\", "d"]),
    ('a\\\\\\b d"e f"g h', ["a\\\\\\b", "de fg", "h"]),
    ('a\\\\\\"b c d', ['a\\"b', "c", "d"]),
    ('a\\\\\\\\"b c" d e', ["a\\\\b c", "d", "e"]),
    ('a"b"" c d', ['ab"', "c", "d"]),
])
def test_microsofts_examples(line, argv):
    assert split_windows("prog.exe " + line) == ["prog.exe", *argv]


def test_the_documents_program_path_stays_whole():
    assert split_windows(r"C:\temp\ConsoleApp1.exe /server any") == [r"C:\temp\ConsoleApp1.exe", "/server", "any"]
    assert shlex.split(r"C:\temp\ConsoleApp1.exe /server any")[0] == "C:tempConsoleApp1.exe"  # why POSIX rules fail
    # the program name: quotes group, backslashes stay (even before the closing quote)
    assert split_windows(r'"C:\Program Files\Hv\ConsoleApp1.exe" /client parent') == [
        r"C:\Program Files\Hv\ConsoleApp1.exe", "/client", "parent"]
    assert split_windows('  tool\targ  "" x  ') == ["tool", "arg", "", "x"]
    assert split_windows('tool "open to the end') == ["tool", "open to the end"]
    assert split_windows("") == [] and split_windows(" \t ") == []


def test_each_nodes_rules_are_chosen_by_its_os():
    assert split_for("windows", r"C:\t\a.exe --to C:\x") == [r"C:\t\a.exe", "--to", r"C:\x"]
    assert split_for("linux", "sh -c 'echo a b'") == ["sh", "-c", "echo a b"]
    assert quote_for("windows", 'two "words"') == '"two \\"words\\""'
    assert quote_for("linux", "two words") == "'two words'"


_arg = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_program = _arg.filter(lambda s: '"' not in s and not s.endswith("\\"))  # no Windows file name has either


@given(_program, st.lists(_arg, max_size=6))
def test_list2cmdline_round_trips(program, args):
    argv = [program, *args]
    line = join_windows(argv)
    assert line == subprocess.list2cmdline(argv)
    assert split_windows(line) == argv
