"""The exact PowerShell a Hyper-V host or Windows guest receives: registration, removal, listing, Get-VM.

Pinned as full text, since nothing here can run them: a change to any of these scripts must be a
deliberate change to this file too.
"""
from __future__ import annotations

import base64

import pytest

from harness.hyperv import powershell, registration, vmids

REGISTER_19000_19001_19003_AND_WINDOWS_ONLY = r"""$ErrorActionPreference = 'Stop'
$root = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\GuestCommunicationServices'
$name = 'hvsock-matrix'
if (-not (Test-Path -LiteralPath $root)) { Write-Output 'missing-root'; exit 3 }
$guids = New-Object System.Collections.Generic.List[string]
for ([long]$p = 19000; $p -le 19001; $p++) { $guids.Add(('{0:x8}-facb-11e6-bd58-64006a7986d3' -f $p)) }
for ([long]$p = 19003; $p -le 19003; $p++) { $guids.Add(('{0:x8}-facb-11e6-bd58-64006a7986d3' -f $p)) }
$guids.Add('9866c7bc-0c89-4cb0-9427-5b526d1ae83b')
foreach ($g in $guids) {
    $key = Join-Path $root $g
    if ((Test-Path -LiteralPath $key) -or (Test-Path -LiteralPath (Join-Path $root ('{' + $g + '}')))) {
        Write-Output ('present ' + $g)
    } else {
        $null = New-Item -Path $key -Force
        $null = New-ItemProperty -LiteralPath $key -Name 'ElementName' -PropertyType String -Value $name
        Write-Output ('added ' + $g)
    }
}
"""

UNREGISTER_19000 = r"""$ErrorActionPreference = 'Stop'
$root = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\GuestCommunicationServices'
$name = 'hvsock-matrix'
if (-not (Test-Path -LiteralPath $root)) { Write-Output 'missing-root'; exit 3 }
$guids = New-Object System.Collections.Generic.List[string]
for ([long]$p = 19000; $p -le 19000; $p++) { $guids.Add(('{0:x8}-facb-11e6-bd58-64006a7986d3' -f $p)) }
foreach ($g in $guids) {
    $key = Join-Path $root $g
    if (-not (Test-Path -LiteralPath $key)) { Write-Output ('absent ' + $g); continue }
    $owner = (Get-ItemProperty -LiteralPath $key -Name 'ElementName' -ErrorAction SilentlyContinue).ElementName
    if ($owner -ne $name) { Write-Output ('foreign ' + $g); continue }
    Remove-Item -LiteralPath $key -Recurse -Force
    Write-Output ('removed ' + $g)
}
"""

LIST = r"""$ErrorActionPreference = 'Stop'
$root = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\GuestCommunicationServices'
if (-not (Test-Path -LiteralPath $root)) { Write-Output 'missing-root'; exit 3 }
Get-ChildItem -LiteralPath $root | ForEach-Object { Write-Output ($_.PSChildName + "`t" + [string]$_.GetValue('ElementName') + "`t" + [string]$_.GetValue('HvsockMatrixOwner')) }
"""

GET_VM = """$ErrorActionPreference = 'Stop'
Get-VM | Select-Object Name,@{Name='Id';Expression={$_.Id.ToString()}} | ConvertTo-Json -Compress
"""
GET_VM_ENCODED = (
    "JABFAHIAcgBvAHIAQQBjAHQAaQBvAG4AUAByAGUAZgBlAHIAZQBuAGMAZQAgAD0AIAAnAFMAdABvAHAAJwAKAEcAZQB0AC0AVgBNACAAfAAg"
    "AFMAZQBsAGUAYwB0AC0ATwBiAGoAZQBjAHQAIABOAGEAbQBlACwAQAB7AE4AYQBtAGUAPQAnAEkAZAAnADsARQB4AHAAcgBlAHMAcwBpAG8A"
    "bgA9AHsAJABfAC4ASQBkAC4AVABvAFMAdAByAGkAbgBnACgAKQB9AH0AIAB8ACAAQwBvAG4AdgBlAHIAdABUAG8ALQBKAHMAbwBuACAALQBD"
    "AG8AbQBwAHIAZQBzAHMACgA="
)

GUEST_VM_ID = r"""$ErrorActionPreference = 'Stop'
$p = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Virtual Machine\Guest\Parameters' -Name 'VirtualMachineId' -ErrorAction SilentlyContinue
if ($p) { Write-Output $p.VirtualMachineId } else { Write-Output 'none' }
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


def test_register_script_exact_text():
    guids = {"00004a38-facb-11e6-bd58-64006a7986d3", "00004A39-FACB-11E6-BD58-64006A7986D3",
             "00004a3b-facb-11e6-bd58-64006a7986d3", "{9866C7BC-0C89-4CB0-9427-5B526D1AE83B}"}
    assert registration.register_script(guids) == REGISTER_19000_19001_19003_AND_WINDOWS_ONLY


def test_unregister_script_exact_text():
    assert registration.unregister_script({"00004a38-facb-11e6-bd58-64006a7986d3"}) == UNREGISTER_19000


def test_list_script_exact_text():
    assert registration.list_script() == LIST


def test_get_vm_script_and_its_exact_encoding():
    assert vmids.GET_VM_SCRIPT == GET_VM
    assert powershell.encode_command(vmids.GET_VM_SCRIPT) == GET_VM_ENCODED


def test_guest_vm_id_script_exact_text():
    assert vmids.GUEST_VM_ID_SCRIPT == GUEST_VM_ID


def test_registry_paths_agree_with_documented_keys():
    from harness import addresses

    assert registration.GCS_ROOT.replace("HKLM:", "HKLM") == addresses.GCS_REGISTRY_KEY.replace("HKEY_LOCAL_MACHINE", "HKLM")
    assert vmids.GUEST_PARAMETERS_KEY.replace("HKLM:", "HKLM") == addresses.GUEST_VM_ID_REGISTRY_KEY


def test_a_big_port_range_stays_one_short_script():
    scripts = registration._chunks(registration.guids_for_ports(19000, 29999), registration.register_script)
    assert len(scripts) == 1
    assert "for ([long]$p = 19000; $p -le 29999; $p++)" in scripts[0]
    powershell.powershell_argv(scripts[0])  # fits one command line


def test_many_scattered_guids_are_split_into_scripts_that_fit():
    scattered = {f"{i:08x}-0000-4000-8000-000000000000" for i in range(2000)}
    scripts = registration._chunks(scattered, registration.register_script)
    assert len(scripts) > 1
    sent = []
    for script in scripts:
        powershell.powershell_argv(script)
        sent += [line for line in script.splitlines() if line.startswith("$guids.Add('")]
    assert len(sent) == 2000
