"""PowerShell 5.1's CLIXML error stream, as Windows writes it, read back as the real message."""
from __future__ import annotations

import pytest

from harness.errors import NodeError
from harness.hyperv import vmids
from harness.hyperv.clixml import error_text, first_error_line
from harness.transports import open_transport
from tests.fakes.fake_windows import (
    FAKE_PASSWORD_ENV,
    GET_VM_NOT_RECOGNIZED_CLIXML,
    FakeHyperVLab,
    fake_lab_inventory,
    fake_lab_machines,
)

# pwsh 7 through `ssh -T` (PowerShell/PowerShell#16678): ANSI colours escaped as _x001B_
PWSH7_SAMPLE = ('#< CLIXML\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
                '<S S="Error">_x001B_[91mWrite-Error: _x001B_[91mboomed_x001B_[0m_x000A_</S></Objs>')


def test_windows_powershell_51_error_record_is_read_back():
    text = error_text(GET_VM_NOT_RECOGNIZED_CLIXML)
    assert text.startswith("Get-VM : The term 'Get-VM' is not recognized as the name of a cmdlet")
    assert "Preparing modules" not in text and "_x000D_" not in text and "<S" not in text
    assert "CommandNotFoundException" in text
    assert first_error_line(GET_VM_NOT_RECOGNIZED_CLIXML).endswith("operable program. Check the")


def test_ansi_colours_and_escapes_are_dropped():
    assert error_text(PWSH7_SAMPLE) == "Write-Error: boomed"


@pytest.mark.parametrize("plain", ["", "plain error\r\n", "x" * 10])
def test_plain_stderr_is_unchanged(plain):
    assert error_text(plain) == plain


def test_broken_clixml_gives_no_traceback():
    assert error_text("#< CLIXML\r\n<Objs><S S=\"Error\">unterminated") == ""
    assert first_error_line("#< CLIXML\r\n<Objs>", "fallback line\n") == "fallback line"


def test_a_failing_script_over_psexec_reads_the_real_message(monkeypatch):
    """Get-VM on a machine without Hyper-V: the node error names the cmdlet, not `#< CLIXML`."""
    FakeHyperVLab(fake_lab_machines()).install(monkeypatch)
    monkeypatch.setenv(FAKE_PASSWORD_ENV, "pw")
    inventory = fake_lab_inventory()
    transport = open_transport(inventory.nodes["win-vm"], inventory)
    try:
        with pytest.raises(NodeError) as err:
            vmids.host_vm_ids(transport)
    finally:
        transport.close()
    assert "The term 'Get-VM' is not recognized" in err.value.message
    assert "CLIXML" not in err.value.message
