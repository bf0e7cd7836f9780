"""The probe's one command line: sh, cmd.exe /c and CommandLineToArgvW read the same arguments.

sh is run for real; cmd.exe's side follows Win32-OpenSSH do_exec_windows (contrib/win32/win32compat/
w32-doexec.c: `"<shell>" /c "<command>"`, whose outer quotes cmd.exe removes again) and the program's
CommandLineToArgvW split (harness/command_line.py split_windows, Microsoft's documented rules).
"""
from __future__ import annotations

import subprocess

import pytest

from harness.command_line import split_windows
from harness.transports.base import portable_command_line

ARGVS = [
    ["python3", "/tmp/hvsock-matrix.0a1b2c3d4e5f6a7b/probe.pyz", "session", "--idle-timeout", "900", "--lab-node"],
    ["py", r"C:\Users\tester\hvsock-matrix.0a1b2c3d4e5f6a7b\probe.pyz", "session", "--idle-timeout", "900"],
    [r"C:\Program Files\Python312\python.exe", r"C:\Users\a b\hvsock-matrix.00\probe.pyz", "info"],
    ["ip", "netns", "exec", "ns1", "python3", "/tmp/x/probe.pyz", "services", "register", "19000-19099",
     "--owner", "controller.example:4242:12345", "9866c7bc-0c89-4cb0-9427-5b526d1ae83b"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=range(len(ARGVS)))
def test_sh_and_windows_read_the_same_argv(argv):
    line = portable_command_line(argv)
    out = subprocess.run(["sh", "-c", f"printf '%s\\n' {line}"], stdout=subprocess.PIPE, check=True).stdout
    assert out.decode().splitlines() == argv  # sh
    assert split_windows(line) == argv  # cmd.exe /c "<line>" -> the program's CommandLineToArgvW


@pytest.mark.parametrize("arg", ['a"b', "50%", "x&y", "a|b", "$HOME", "`id`", "it's", "a\\\\b", "C:\\dir\\",
                                 "World!", "a;b", "(x)", "a^b", "a<b", "new\nline"])
def test_an_argument_with_no_common_form_is_refused(arg):
    with pytest.raises(ValueError, match="cannot be passed alike"):
        portable_command_line(["py", arg])
