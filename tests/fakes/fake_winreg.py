"""A fake `winreg` module over one fake Windows machine's GuestCommunicationServices entries.

The probe's registration code (harness/probe/registry.py) runs unchanged against it. Each call
mirrors what CPython's winreg does on Windows (python/cpython, PC/winreg.c, which wraps the Win32
registry API):

- OpenKey / OpenKeyEx (winreg_OpenKeyEx_impl -> RegOpenKeyExW): a missing key raises
  FileNotFoundError (PyErr_SetFromWindowsErrWithFunction: ERROR_FILE_NOT_FOUND 2 maps to it);
  names are case-insensitive, as the registry's are.
- CreateKeyEx (RegCreateKeyExW): opens the key when it exists, else creates it.
- SetValueEx / QueryValueEx (RegSetValueExW / RegQueryValueExW): a missing value raises
  FileNotFoundError; QueryValueEx returns (value, type).
- DeleteKeyEx (RegDeleteKeyExW): a missing key raises FileNotFoundError.
- EnumKey (RegEnumKeyExW): OSError (ERROR_NO_MORE_ITEMS, 259) past the last subkey.
- the HKEY objects (PyHKEY) close with Close() and work as context managers.

Only HKLM\\...\\GuestCommunicationServices exists, and only on a machine with the Hyper-V role:
elsewhere opening it is FileNotFoundError, as on a Windows without Hyper-V.
"""
from __future__ import annotations

import types

from harness.probe import registry

HKEY_LOCAL_MACHINE = 0x80000002
KEY_READ = 0x20019
KEY_WRITE = 0x20006
KEY_WOW64_64KEY = 0x0100
REG_SZ = 1
ERROR_NO_MORE_ITEMS = 259


class _Key:
    def __init__(self, store, name: str | None):
        self.store = store  # the machine
        self.name = name  # None: the GuestCommunicationServices root

    def Close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.Close()


def _find(machine, name: str) -> str | None:
    lowered = name.lower()
    return next((k for k in machine.gcs if k.lower() == lowered), None)


def module_for(machine) -> types.ModuleType:
    """A `winreg` whose registry is `machine`: gcs (key name -> ElementName) and gcs_owner."""
    mod = types.ModuleType("winreg")
    mod.HKEY_LOCAL_MACHINE, mod.KEY_READ, mod.KEY_WRITE, mod.KEY_WOW64_64KEY, mod.REG_SZ = (
        HKEY_LOCAL_MACHINE, KEY_READ, KEY_WRITE, KEY_WOW64_64KEY, REG_SZ)
    opened: list[int] = []
    mod.opened = opened  # access masks asked for (tests check the 64-bit view)

    def OpenKey(key, sub_key, reserved=0, access=KEY_READ):
        opened.append(access)
        if key == HKEY_LOCAL_MACHINE:
            if sub_key.lower() != registry.ROOT.lower() or not machine.hyperv_role:
                raise FileNotFoundError(2, "The system cannot find the file specified")
            return _Key(machine, None)
        found = _find(machine, sub_key)
        if found is None:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return _Key(machine, found)

    def CreateKeyEx(key, sub_key, reserved=0, access=KEY_WRITE):
        opened.append(access)
        found = _find(machine, sub_key)
        if found is None:
            machine.gcs[sub_key] = ""
            found = sub_key
        return _Key(machine, found)

    def SetValueEx(key, name, reserved, kind, value):
        assert kind == REG_SZ
        if name == "ElementName":
            machine.gcs[key.name] = value
        elif name == registry.OWNER_VALUE:
            machine.gcs_owner[key.name] = value
        else:
            raise AssertionError(f"unexpected value {name}")

    def QueryValueEx(key, name):
        if name == "ElementName" and machine.gcs.get(key.name):
            return machine.gcs[key.name], REG_SZ
        if name == registry.OWNER_VALUE and key.name in machine.gcs_owner:
            return machine.gcs_owner[key.name], REG_SZ
        raise FileNotFoundError(2, "The system cannot find the file specified")

    def DeleteKeyEx(key, sub_key, access=KEY_WOW64_64KEY, reserved=0):
        opened.append(access)
        found = _find(machine, sub_key)
        if found is None:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        del machine.gcs[found]
        machine.gcs_owner.pop(found, None)

    def EnumKey(key, index):
        names = list(machine.gcs)
        if index >= len(names):
            raise OSError(ERROR_NO_MORE_ITEMS, "No more data is available")
        return names[index]

    for fn in (OpenKey, CreateKeyEx, SetValueEx, QueryValueEx, DeleteKeyEx, EnumKey):
        setattr(mod, fn.__name__, fn)
    return mod
