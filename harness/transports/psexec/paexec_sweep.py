"""PAExec services and executables left on a Windows node by killed controller processes, removed.

Why: pypsexec names its service and C:\\Windows\\<name>.exe `PAExec-<controller pid>-<controller
host>` (client.py Client.__init__) and removes them only when its process ends cleanly; a killed run
leaves them forever. pypsexec's own cleanup() deletes every PAExec-* service, including those of live
runs and of other controllers, so it is never used. This sweep removes only names of this controller
host whose pid is no longer alive (harness.hyperv.ownership.stale_paexec_names).
"""
from __future__ import annotations

import subprocess

from harness import timeouts
from harness.hyperv.ownership import stale_paexec_names
from harness.hyperv.powershell import output_lines, powershell_argv, ps_quote

LIST_SCRIPT = "\n".join([
    "$ErrorActionPreference = 'Continue'",
    "Get-Service -Name 'PAExec-*' -ErrorAction SilentlyContinue | "
    "ForEach-Object { Write-Output ('service ' + $_.Name) }",
    "Get-ChildItem -LiteralPath $env:SystemRoot -Filter 'PAExec-*.exe' -ErrorAction SilentlyContinue | "
    "ForEach-Object { Write-Output ('exe ' + $_.BaseName) }",
]) + "\n"


def remove_script(names: list[str]) -> str:
    """Stops and deletes each named service, deletes its exe; prints `removed <name>` per name."""
    quoted = ", ".join(ps_quote(n) for n in names)
    return "\n".join([
        "$ErrorActionPreference = 'Continue'",
        f"foreach ($n in @({quoted})) {{",
        "    if (Get-Service -Name $n -ErrorAction SilentlyContinue) {",
        "        Stop-Service -Name $n -Force -ErrorAction SilentlyContinue",
        "        $null = & sc.exe delete $n",
        "    }",
        "    $exe = Join-Path $env:SystemRoot ($n + '.exe')",
        "    if (Test-Path -LiteralPath $exe) { Remove-Item -LiteralPath $exe -Force -ErrorAction SilentlyContinue }",
        "    Write-Output ('removed ' + $n)",
        "}",
    ]) + "\n"


def _run(client, script: str) -> str:
    exe, *args = powershell_argv(script)
    stdout, _, _ = client.run_executable(exe, arguments=subprocess.list2cmdline(args), asynchronous=False,
                                         run_elevated=True, timeout_seconds=int(timeouts.PSEXEC_SWEEP))
    return (stdout or b"").decode("utf-8", errors="replace")


def sweep(client) -> list[str]:
    """Removes stale PAExec services/exes through `client` (a connected pypsexec Client with its own
    service created); returns the names removed."""
    names = sorted({line.split(" ", 1)[1] for line in output_lines(_run(client, LIST_SCRIPT))
                    if line.startswith(("service ", "exe ")) and " " in line})
    stale = stale_paexec_names(names)
    if not stale:
        return []
    return [line.split(" ", 1)[1] for line in output_lines(_run(client, remove_script(stale)))
            if line.startswith("removed ")]
