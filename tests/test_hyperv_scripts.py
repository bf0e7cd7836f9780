"""PowerShell as a Windows node receives it (-EncodedCommand), and the one script left: Get-VM.

Registration is the probe's own winreg code now (harness/probe/registry.py); the Get-VM script is
pinned as full text, since nothing here can run it: a change must be a deliberate change here too.
"""
from __future__ import annotations

import base64

import pytest

from harness.hyperv import powershell, registration, vmids

WINDOWS_ONLY = "9866c7bc-0c89-4cb0-9427-5b526d1ae83b"
GET_VM = r"""$ErrorActionPreference = 'Stop'
[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false
function Out-Ascii($text) { [regex]::Replace($text, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value }) }
try {
  $vms = @(Get-VM | ForEach-Object { @{ Name = [string]$_.Name; Id = $_.Id.ToString() } })
  Write-Output (Out-Ascii (ConvertTo-Json -InputObject @{ vms = $vms } -Compress -Depth 3))
} catch {
  Write-Output (Out-Ascii (ConvertTo-Json -InputObject @{ error = [string]$_.Exception.Message } -Compress))
  exit 1
}
"""


def test_encode_command_matches_powershell_help_example():
    # powershell.exe -? : $command = 'dir "c:\program files" ' -> this exact text
    assert powershell.encode_command('dir "c:\\program files" ') == \
        "ZABpAHIAIAAiAGMAOgBcAHAAcgBvAGcAcgBhAG0AIABmAGkAbABlAHMAIgAgAA=="


def test_encode_command_is_utf16le_base64_round_trip():
    script = "Write-Output 'héllo ✓'\n"
    encoded = powershell.encode_command(script)
    assert base64.b64decode(encoded) == script.encode("utf-16-le")
    assert powershell.decode_command(encoded) == script


def test_powershell_argv_shape():
    argv = powershell.powershell_argv("Get-Date")
    assert argv == ["powershell.exe", "-NoProfile", "-NonInteractive", "-EncodedCommand", "RwBlAHQALQBEAGEAdABlAA=="]


def test_powershell_argv_refuses_a_script_too_long_for_a_command_line():
    with pytest.raises(ValueError, match="too long"):
        powershell.powershell_argv("x" * 20000)


def test_ps_quote_doubles_single_quotes_and_expands_nothing():
    assert powershell.ps_quote("it's $HOME") == "'it''s $HOME'"


def test_get_vm_script_exact_text_round_trips_its_encoding():
    """The one script a Hyper-V host still gets (pinned: nothing here can run it)."""
    assert vmids.GET_VM_SCRIPT == GET_VM
    assert powershell.decode_command(powershell.encode_command(vmids.GET_VM_SCRIPT)) == GET_VM
    powershell.powershell_argv(vmids.GET_VM_SCRIPT)  # fits one command line


def test_registry_paths_agree_with_documented_keys():
    from harness import addresses
    from harness.probe import facts, registry

    assert addresses.GCS_REGISTRY_KEY.replace("HKEY_LOCAL_MACHINE", "HKLM") == registration.GCS_ROOT
    assert "HKLM\\" + registry.ROOT == registration.GCS_ROOT
    assert "HKLM\\" + facts.GUEST_PARAMETERS_KEY == addresses.GUEST_VM_ID_REGISTRY_KEY


def test_a_big_port_range_is_one_short_request():
    assert registration.selection_items(registration.guids_for_ports(19000, 29999)) == ["19000-29999"]
    assert registration.selection_items({registration.service_guid(5), WINDOWS_ONLY.upper()}) == ["5", WINDOWS_ONLY]
