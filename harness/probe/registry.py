"""Hyper-V service GUID registration on a Windows host, done by the probe itself with `winreg`.

A VM can use a Hyper-V socket service only once the host lists its GUID under
HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\GuestCommunicationServices
(Microsoft, "Make your own integration services": a subkey named by the service GUID with a
string value ElementName). The documents' program names the subkey `{guid:D}` (lowercase, no
braces); a braced key counts as present too.

Every key this writes carries ElementName "hvsock-matrix" and OWNER_VALUE, the owner tag of the
controller run that asked. Removal touches only a key that is provably that owner's: a key that
was present before (any name, any owner), one without an owner tag, or one of another owner is
never removed. Which owners are dead is the controller's judgement (harness/hyperv/ownership.py);
the probe only lists and removes what it is told, under these rules.

Stdlib only, Python >= 3.8; the registry is opened in its 64-bit view (KEY_WOW64_64KEY), so a
32-bit Python on 64-bit Windows is not redirected to WOW6432Node.
"""
import re

ROOT = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\GuestCommunicationServices"
ELEMENT_NAME = "hvsock-matrix"
OWNER_VALUE = "HvsockMatrixOwner"
TEMPLATE_SUFFIX = "-facb-11e6-bd58-64006a7986d3"
MAX_GUIDS = 100000  # bounded work, whatever a request says
_GUID = re.compile(r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class RegistryError(Exception):
    """The registration could not be read or written (one line for the controller)."""


def canonical(text):
    match = _GUID.match(str(text).strip())
    return match.group(1).lower() if match else None


def expand(items):
    """GUIDs from a selection: GUID text, or vsock ports / port ranges ("19000", "19000-19099")
    standing for their template GUIDs. Sorted, without duplicates."""
    out = set()
    for item in items or ():
        text = str(item).strip()
        guid = canonical(text)
        if guid:
            out.add(guid)
            continue
        match = _RANGE.match(text)
        if not match:
            raise ValueError(f"not a GUID, port or port range: {text!r}")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if not 0 <= first <= last <= 0xFFFFFFFF or last - first >= MAX_GUIDS:
            raise ValueError(f"bad port range {text!r}")
        out.update(f"{port:08x}{TEMPLATE_SUFFIX}" for port in range(first, last + 1))
        if len(out) > MAX_GUIDS:
            raise ValueError(f"more than {MAX_GUIDS} GUIDs in one request")
    return sorted(out)


def _winreg():
    try:
        import winreg
    except ImportError:
        raise RegistryError("no Windows registry on this node (service registration is for Hyper-V hosts)") from None
    return winreg


def _open_root(winreg, write):
    access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY | (winreg.KEY_WRITE if write else 0)
    try:
        return winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, ROOT, 0, access)
    except FileNotFoundError:
        raise RegistryError("no GuestCommunicationServices registry key: is the Hyper-V role installed on this host?") \
            from None
    except PermissionError:
        raise RegistryError(f"access to HKLM\\{ROOT} denied: the probe must run as an administrator") from None


def _value(winreg, key, name):
    try:
        value, _ = winreg.QueryValueEx(key, name)
    except FileNotFoundError:
        return ""
    return str(value)


def _exists(winreg, root, name):
    try:
        winreg.OpenKey(root, name, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY).Close()
    except FileNotFoundError:
        return False
    return True


def register(guids, owner, element=ELEMENT_NAME):
    """Adds each missing GUID key with ElementName and the owner tag: {"added": [...], "present": [...]}.
    A key found present is left exactly as it is, and never becomes ours."""
    if not owner:
        raise RegistryError("register needs an owner tag")
    winreg = _winreg()
    out: dict[str, list[str]] = {"added": [], "present": []}
    root = _open_root(winreg, write=True)
    try:
        for guid in guids:
            if _exists(winreg, root, guid) or _exists(winreg, root, "{" + guid + "}"):
                out["present"].append(guid)
                continue
            key = winreg.CreateKeyEx(root, guid, 0, winreg.KEY_WRITE | winreg.KEY_WOW64_64KEY)
            try:
                winreg.SetValueEx(key, "ElementName", 0, winreg.REG_SZ, element)
                winreg.SetValueEx(key, OWNER_VALUE, 0, winreg.REG_SZ, owner)
            finally:
                key.Close()
            out["added"].append(guid)
    finally:
        root.Close()
    return out


def unregister(guids, owner, element=ELEMENT_NAME):
    """Removes each GUID key whose ElementName is ours AND whose owner tag is exactly `owner`:
    {"removed": [...], "absent": [...], "foreign": [...]}. Untagged keys are foreign."""
    if not owner:
        raise RegistryError("unregister needs the owner tag of the entries to remove")
    winreg = _winreg()
    out: dict[str, list[str]] = {"removed": [], "absent": [], "foreign": []}
    root = _open_root(winreg, write=True)
    try:
        for guid in guids:
            try:
                key = winreg.OpenKey(root, guid, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY)
            except FileNotFoundError:
                out["absent"].append(guid)
                continue
            try:
                mine = _value(winreg, key, "ElementName") == element and _value(winreg, key, OWNER_VALUE) == owner
            finally:
                key.Close()
            if not mine:
                out["foreign"].append(guid)
                continue
            winreg.DeleteKeyEx(root, guid, winreg.KEY_WOW64_64KEY, 0)
            out["removed"].append(guid)
    finally:
        root.Close()
    return out


def listing():
    """Every registered service: [{"guid", "element", "owner"}] (keys that are not GUIDs left out)."""
    winreg = _winreg()
    out = []
    root = _open_root(winreg, write=False)
    try:
        index = 0
        while True:
            try:
                name = winreg.EnumKey(root, index)
            except OSError:  # ERROR_NO_MORE_ITEMS
                break
            index += 1
            guid = canonical(name)
            if guid is None:
                continue
            key = winreg.OpenKey(root, name, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY)
            try:
                out.append({"guid": guid, "key": name, "element": _value(winreg, key, "ElementName"),
                            "owner": _value(winreg, key, OWNER_VALUE)})
            finally:
                key.Close()
    finally:
        root.Close()
    return out


def services(action, items=(), owner=None, element=ELEMENT_NAME):
    """The `services` request: action register | unregister | list. The answer's fields."""
    if action == "list":
        return {"services": listing()}
    guids = expand(items)
    if action == "register":
        return register(guids, owner, element)
    if action == "unregister":
        return unregister(guids, owner, element)
    raise ValueError(f"unknown services action {action!r} (expected register, unregister or list)")


def services_answer(action, items=(), owner=None):
    """`services` as one answer object (session op and one-shot command alike)."""
    from .protocol import Event
    try:
        out = services(action, items, owner)
    except (RegistryError, ValueError) as exc:
        return {"event": Event.ERROR, "message": str(exc)}
    except OSError as exc:  # the registry refused (one line, with its Windows error)
        return {"event": Event.ERROR, "message": f"registry: {exc}"}
    out["event"] = Event.SERVICES
    return out
