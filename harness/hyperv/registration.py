"""Hyper-V service GUID registration on Windows hosts: a VM can use a service only once it is registered.

The key is `HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\GuestCommunicationServices\\<guid>`
with the string value `ElementName` (the documents' program uses `CreateSubKey($"{guid:D}")`: lowercase, no
braces). Every entry this harness writes carries ElementName "hvsock-matrix", so removal never touches a
registration someone else made, and a run removes only the entries it added itself.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Callable, Iterable

from harness import timeouts
from harness.addresses import (
    VSOCK_TEMPLATE_SUFFIX,
    canonical_guid,
    port_for_service_guid,
    port_range,
    service_guid_for,
)
from harness.errors import NodeError
from harness.hyperv.clixml import first_error_line
from harness.hyperv.ownership import owner_tag, tag_is_dead
from harness.hyperv.powershell import (
    MAX_ENCODED_CHARS,
    encode_command,
    output_lines,
    powershell_argv,
    ps_quote,
)

GCS_ROOT = r"HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\GuestCommunicationServices"
ELEMENT_NAME = "hvsock-matrix"
SCRIPT_TIMEOUT = timeouts.REGISTRATION_SCRIPT


# --- which GUIDs a run needs -------------------------------------------------------------------

def service_guid(port: int, explicit: str | None = None) -> str:
    """The cell's service GUID: explicit when given, else the vsock template of the port (harness/addresses.py)."""
    return service_guid_for(int(port), explicit)


def template_port(guid: str) -> int | None:
    """The vsock port inside a template GUID, None for any other GUID."""
    return port_for_service_guid(guid)


def _cell_uses_hyperv(cell, inventory) -> bool:
    if inventory is None:
        return True
    families = [inventory.nodes[n].family for n in (cell.server_on, cell.client_on) if n in inventory.nodes]
    return not families or "hyperv" in families


def guids_for_cells(cells: Iterable, inventory=None) -> set[str]:
    """Every service GUID the cells will use (skipped cells and, given an inventory, non-Hyper-V cells left out)."""
    out: set[str] = set()
    for cell in cells:
        if getattr(cell, "skip_reason", None):
            continue
        if not _cell_uses_hyperv(cell, inventory):
            continue
        out.add(service_guid(cell.port, getattr(cell, "service", None)))
    return out


def guids_for_ports(first: int, last: int) -> set[str]:
    """The template GUIDs of a port range, both ends included."""
    if first > last:
        raise ValueError(f"empty port range {first}-{last}")
    return {service_guid(p) for p in range(first, last + 1)}


def parse_port_range(text: str) -> tuple[int, int]:
    """`19000-19099` or `19000` -> (first, last); ValueError with the text otherwise."""
    parts = str(text).strip().split("-")
    try:
        if len(parts) == 1:
            first = last = int(parts[0])
        elif len(parts) == 2:
            first, last = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"bad port range {text!r} (expected A-B, e.g. 19000-19099)") from None
    low, high = port_range("hyperv")
    if not (low <= first <= last <= high):
        raise ValueError(f"bad port range {text!r} ({low} <= A <= B <= {high})")
    return first, last


# --- the scripts ---------------------------------------------------------------------------------

def _compress(guids: Iterable[str]) -> tuple[list[tuple[int, int]], list[str]]:
    """Template GUIDs as port ranges (short scripts for big ranges), other GUIDs listed."""
    ports: list[int] = []
    others: list[str] = []
    for g in sorted({canonical_guid(x) or x for x in guids}):
        port = template_port(g)
        (others if port is None else ports).append(g if port is None else port)  # type: ignore[arg-type]
    ranges: list[tuple[int, int]] = []
    for p in sorted(ports):
        if ranges and p == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], p)
        else:
            ranges.append((p, p))
    return ranges, others


def _guid_list_lines(guids: Iterable[str]) -> list[str]:
    ranges, others = _compress(guids)
    lines = ["$guids = New-Object System.Collections.Generic.List[string]"]
    for lo, hi in ranges:
        lines.append(
            f"for ([long]$p = {lo}; $p -le {hi}; $p++) "
            f"{{ $guids.Add(('{{0:x8}}{VSOCK_TEMPLATE_SUFFIX}' -f $p)) }}"
        )
    for g in others:
        lines.append(f"$guids.Add({ps_quote(g)})")
    return lines


def _header(element_name: str) -> list[str]:
    return [
        "$ErrorActionPreference = 'Stop'",
        f"$root = {ps_quote(GCS_ROOT)}",
        f"$name = {ps_quote(element_name)}",
        "if (-not (Test-Path -LiteralPath $root)) { Write-Output 'missing-root'; exit 3 }",
    ]


OWNER_VALUE = "HvsockMatrixOwner"  # registry value naming the run: <controller host>:<pid>:<start ticks>


def _owner_lines(owner: str | None) -> list[str]:
    return [f"$runowner = {ps_quote(owner)}"] if owner else []


def register_script(guids: Iterable[str], element_name: str = ELEMENT_NAME, owner: str | None = None) -> str:
    """Adds each missing GUID key with ElementName (and the run's owner tag); prints `added <guid>` or
    `present <guid>` per GUID."""
    lines = _header(element_name) + _owner_lines(owner) + _guid_list_lines(guids) + [
        "foreach ($g in $guids) {",
        "    $key = Join-Path $root $g",
        "    if ((Test-Path -LiteralPath $key) -or (Test-Path -LiteralPath (Join-Path $root ('{' + $g + '}')))) {",
        "        Write-Output ('present ' + $g)",
        "    } else {",
        "        $null = New-Item -Path $key -Force",
        "        $null = New-ItemProperty -LiteralPath $key -Name 'ElementName' -PropertyType String -Value $name",
        *([f"        $null = New-ItemProperty -LiteralPath $key -Name '{OWNER_VALUE}' -PropertyType String "
           "-Value $runowner"] if owner else []),
        "        Write-Output ('added ' + $g)",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def unregister_script(guids: Iterable[str], element_name: str = ELEMENT_NAME, owner: str | None = None) -> str:
    """Removes each GUID key whose ElementName is ours (and, given `owner`, whose owner tag is that one);
    prints `removed|absent|foreign <guid>`."""
    lines = _header(element_name) + _owner_lines(owner) + _guid_list_lines(guids) + [
        "foreach ($g in $guids) {",
        "    $key = Join-Path $root $g",
        "    if (-not (Test-Path -LiteralPath $key)) { Write-Output ('absent ' + $g); continue }",
        "    $owner = (Get-ItemProperty -LiteralPath $key -Name 'ElementName' -ErrorAction SilentlyContinue).ElementName",
        "    if ($owner -ne $name) { Write-Output ('foreign ' + $g); continue }",
        *([f"    $run = (Get-ItemProperty -LiteralPath $key -Name '{OWNER_VALUE}' -ErrorAction SilentlyContinue)."
           f"{OWNER_VALUE}",
           "    if ($run -ne $runowner) { Write-Output ('foreign ' + $g); continue }"] if owner else []),
        "    Remove-Item -LiteralPath $key -Recurse -Force",
        "    Write-Output ('removed ' + $g)",
        "}",
    ]
    return "\n".join(lines) + "\n"


def list_script() -> str:
    """Prints `<key name><TAB><ElementName><TAB><owner tag>` for every registered service."""
    lines = [
        "$ErrorActionPreference = 'Stop'",
        f"$root = {ps_quote(GCS_ROOT)}",
        "if (-not (Test-Path -LiteralPath $root)) { Write-Output 'missing-root'; exit 3 }",
        "Get-ChildItem -LiteralPath $root | ForEach-Object { Write-Output ($_.PSChildName + \"`t\" + "
        f"[string]$_.GetValue('ElementName') + \"`t\" + [string]$_.GetValue('{OWNER_VALUE}')) }}",
    ]
    return "\n".join(lines) + "\n"


def _fits(script: str, limit: int | None) -> bool:
    """True when the script's whole command line stays within the transport's limit."""
    if len(encode_command(script)) > MAX_ENCODED_CHARS:
        return False
    return limit is None or len(subprocess.list2cmdline(powershell_argv(script))) <= limit


def _chunks(guids: Iterable[str], build: Callable[[list[str]], str], limit: int | None = None) -> list[str]:
    """Scripts small enough for one command line each on this transport (ranges keep most runs to one)."""
    pending = sorted({canonical_guid(g) or g for g in guids})
    if not pending:
        return []
    scripts: list[str] = []
    size = len(pending)
    while pending:
        part = pending[:size]
        script = build(part)
        if not _fits(script, limit):
            if size == 1:
                raise ValueError(f"one GUID's script does not fit a command line of {limit} characters")
            size = max(1, size // 2)
            continue
        scripts.append(script)
        pending = pending[size:]
    return scripts


def _limit(transport) -> int | None:
    limit = getattr(transport, "command_line_limit", None)
    return limit() if callable(limit) else None


# --- running them --------------------------------------------------------------------------------

def _parse_states(node: str, stdout: str, states: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in states}
    for line in output_lines(stdout):
        if line == "missing-root":
            raise NodeError(node, "no GuestCommunicationServices registry key: is the Hyper-V role installed on this host?")
        word, _, rest = line.partition(" ")
        guid = canonical_guid(rest)
        if word in out and guid:
            out[word].append(guid)
    return out


def _run_script(transport, script: str) -> str:
    node = transport.node.name
    result = transport.run(powershell_argv(script), timeout=SCRIPT_TIMEOUT)
    if result.rc != 0 and "missing-root" not in result.stdout:
        raise NodeError(node, f"PowerShell exited {result.rc}: {first_error_line(result.stderr, result.stdout)}")
    return result.stdout


@dataclass
class RegistrationReport:
    """What one host answered: `added` is what the caller must later remove."""

    node: str
    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


def register_guids(transport, guids: Iterable[str], element_name: str = ELEMENT_NAME,
                   owner: str | None = None) -> RegistrationReport:
    """Registers `guids`; with `owner` (a run's owner_tag) they are that run's, swept once it is dead.
    Without it (hvsock-matrix register, --keep-registration) they stay until unregistered by hand."""
    report = RegistrationReport(transport.node.name)
    wanted = set(canonical_guid(g) or g for g in guids)
    for script in _chunks(wanted, lambda part: register_script(part, element_name, owner), _limit(transport)):
        states = _parse_states(report.node, _run_script(transport, script), ("added", "present"))
        report.added += states["added"]
        report.present += states["present"]
    missing = wanted - set(report.added) - set(report.present)
    if missing:
        raise NodeError(report.node, f"registration did not confirm {len(missing)} GUID(s), e.g. {sorted(missing)[0]}")
    return report


def unregister_guids(transport, guids: Iterable[str], element_name: str = ELEMENT_NAME) -> dict[str, list[str]]:
    """Removes our entries among `guids`; returns {'removed': [...], 'absent': [...], 'foreign': [...]}."""
    total: dict[str, list[str]] = {"removed": [], "absent": [], "foreign": []}
    for script in _chunks(guids, lambda part: unregister_script(part, element_name), _limit(transport)):
        states = _parse_states(transport.node.name, _run_script(transport, script), tuple(total))
        for key, values in states.items():
            total[key] += values
    return total


def parse_listing(stdout: str) -> dict[str, str]:
    """{guid: ElementName} from list_script's output; keys that are not GUIDs are left out."""
    return {guid: element for guid, (element, _) in parse_owned_listing(stdout).items()}


def parse_owned_listing(stdout: str) -> dict[str, tuple[str, str]]:
    """{guid: (ElementName, owner tag)} from list_script's output."""
    out: dict[str, tuple[str, str]] = {}
    for line in stdout.replace("\r\n", "\n").split("\n"):
        name, _, rest = line.strip("\r").partition("\t")
        element, _, owner = rest.partition("\t")
        guid = canonical_guid(name)
        if guid:
            out[guid] = (element.strip(), owner.strip())
    return out


def _listing(transport) -> str:
    stdout = _run_script(transport, list_script())
    if "missing-root" in output_lines(stdout):
        raise NodeError(transport.node.name, "no GuestCommunicationServices registry key: is the Hyper-V role installed on this host?")
    return stdout


def list_registered(transport) -> dict[str, str]:
    return parse_listing(_listing(transport))


def sweep_dead_runs(transport, element_name: str = ELEMENT_NAME) -> list[str]:
    """Removes registrations left by killed runs of this controller (owner tag of a dead process);
    never one of a live run, of another controller, or without an owner tag. Returns what it removed."""
    by_owner: dict[str, list[str]] = {}
    for guid, (element, owner) in parse_owned_listing(_listing(transport)).items():
        if element == element_name and owner and tag_is_dead(owner):
            by_owner.setdefault(owner, []).append(guid)
    removed: list[str] = []
    for owner, guids in sorted(by_owner.items()):
        for script in _chunks(guids, lambda part: unregister_script(part, element_name, owner), _limit(transport)):
            removed += _parse_states(transport.node.name, _run_script(transport, script), ("removed",))["removed"]
    return removed


# --- around a run ---------------------------------------------------------------------------------

def hyperv_hosts(inventory) -> list:
    """The nodes that need registrations: Windows hosts (role host, os windows)."""
    return [n for n in inventory.nodes.values() if n.role == "host" and n.os == "windows"]


class RegistrationGuard:
    """Registers the run's service GUIDs on every Hyper-V host before a run; removes what it added after.

        with RegistrationGuard(inventory, cells=cells, keep=args.keep_registration):
            ...run the cells...

    `transport_for(node)` gives the node's transport; the default is harness.transports.open_transport,
    whose cached transports the run shares and AgentPool.close() / close_inventory() close, so the
    guard never closes them itself (the session passes `lambda n: pool.transport(n.name)`). With
    strict=False a host that cannot be registered is recorded in `errors` (its cells will fail
    on their own) instead of aborting the run.
    """

    def __init__(self, inventory, cells: Iterable | None = None, guids: Iterable[str] | None = None,
                 keep: bool = False, transport_for: Callable | None = None, strict: bool = True,
                 element_name: str = ELEMENT_NAME):
        self.inventory = inventory
        wanted = set(guids or ())
        if cells is not None:
            wanted |= guids_for_cells(cells, inventory)
        self.guids = wanted
        self.keep = keep
        self.strict = strict
        self.element_name = element_name
        self._transport_for = transport_for
        self._owned: list = []
        self._transports: dict = {}
        self.reports: dict[str, RegistrationReport] = {}
        self.errors: dict[str, str] = {}
        self.cleanup_errors: dict[str, str] = {}
        self.removed: dict[str, list[str]] = {}
        self.swept: dict[str, list[str]] = {}  # node -> GUIDs of killed runs removed before registering

    def _transport(self, node):
        if node.name in self._transports:
            return self._transports[node.name]
        if self._transport_for is not None:
            transport = self._transport_for(node)
        else:
            from harness.transports import open_transport

            transport = open_transport(node, self.inventory)  # shared cache: not ours to close
        self._transports[node.name] = transport
        return transport

    def __enter__(self) -> "RegistrationGuard":
        if not self.guids:
            return self
        for node in hyperv_hosts(self.inventory):
            try:
                transport = self._transport(node)
                self.swept[node.name] = sweep_dead_runs(transport, self.element_name)  # a killed run's leftovers
                self.reports[node.name] = register_guids(transport, self.guids, self.element_name,
                                                         None if self.keep else owner_tag())
            except NodeError as err:
                if self.strict:
                    self._undo()
                    self._close()
                    raise
                self.errors[node.name] = err.message
        return self

    def _undo(self) -> None:
        for name, report in self.reports.items():
            if not report.added:
                continue
            try:
                node = self.inventory.nodes[name]
                self.removed[name] = unregister_guids(self._transport(node), report.added, self.element_name)["removed"]
            except NodeError as err:
                self.cleanup_errors[name] = err.message

    def _close(self) -> None:
        for transport in self._owned:
            try:
                transport.close()
            except Exception:  # closing is best effort; the run's result is already decided
                pass
        self._owned.clear()
        self._transports.clear()

    def __exit__(self, *exc) -> None:
        try:
            if not self.keep:
                self._undo()
        finally:
            self._close()

    @property
    def added(self) -> dict[str, list[str]]:
        return {name: list(r.added) for name, r in self.reports.items()}
