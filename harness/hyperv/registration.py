"""Hyper-V service GUID registration on Windows hosts: a VM can use a service only once it is registered.

The key is `HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\GuestCommunicationServices\\<guid>`
with the string value `ElementName` (Microsoft, "Make your own integration services"; the documents'
program uses `CreateSubKey($"{guid:D}")`: lowercase, no braces). The host's probe writes and removes
the keys itself with `winreg` (harness/probe/registry.py, the `services` request): no PowerShell.

Ownership: every key carries ElementName "hvsock-matrix" and the owner tag of the controller run that
asked (harness/hyperv/ownership.py). A run removes only keys with its own tag; a key found present, an
untagged key or another owner's is never touched. Keys of a run that is provably dead (a process of this
controller host that is gone) are swept before the next registration and by `hvsock-matrix unregister`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from harness.addresses import (
    VSOCK_TEMPLATE_SUFFIX,  # noqa: F401  (callers name it through this module)
    canonical_guid,
    port_for_service_guid,
    port_range,
    service_guid_for,
)
from harness.errors import NodeError
from harness.hyperv.ownership import owner_tag, tag_is_dead
from harness.probe import registry as probe_registry
from harness.probe.protocol import is_services

GCS_ROOT = "HKLM\\" + probe_registry.ROOT
ELEMENT_NAME = probe_registry.ELEMENT_NAME
OWNER_VALUE = probe_registry.OWNER_VALUE


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


# --- asking the host's probe ----------------------------------------------------------------------

def selection_items(guids: Iterable[str]) -> list[str]:
    """GUIDs as the probe's `services` request takes them: template GUIDs as port ranges (a run's
    hundreds of ports stay a few words), other GUIDs as they are."""
    ports: list[int] = []
    others: list[str] = []
    for g in sorted({canonical_guid(x) or x for x in guids}):
        port = template_port(g)
        if port is None:
            others.append(g)
        else:
            ports.append(port)
    ranges: list[tuple[int, int]] = []
    for p in sorted(ports):
        if ranges and p == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], p)
        else:
            ranges.append((p, p))
    return [f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in ranges] + others


def _ask(agent, action: str, guids: Iterable[str] = (), owner: str | None = None) -> dict:
    answer = agent.services(action, selection_items(guids), owner)
    if not is_services(answer):
        raise NodeError(agent.node.name, str(answer.get("message") or answer))
    return answer


@dataclass
class RegistrationReport:
    """What one host answered: `added` is what the caller must later remove."""

    node: str
    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


def register_guids(agent, guids: Iterable[str], owner: str | None = None) -> RegistrationReport:
    """Registers `guids` under `owner` (default: this run's tag); keys found present stay as they were."""
    wanted = {canonical_guid(g) or g for g in guids}
    answer = _ask(agent, "register", wanted, owner or owner_tag())
    report = RegistrationReport(agent.node.name, list(answer.get("added") or []), list(answer.get("present") or []))
    missing = wanted - set(report.added) - set(report.present)
    if missing:
        raise NodeError(report.node, f"registration did not confirm {len(missing)} GUID(s), e.g. {sorted(missing)[0]}")
    return report


def unregister_guids(agent, guids: Iterable[str], owner: str | None = None) -> dict[str, list[str]]:
    """Removes those of `guids` that carry `owner`'s tag (default: this run's):
    {'removed': [...], 'absent': [...], 'foreign': [...]}."""
    answer = _ask(agent, "unregister", guids, owner or owner_tag())
    return {key: list(answer.get(key) or []) for key in ("removed", "absent", "foreign")}


def list_registered(agent) -> list[dict]:
    """Every registered service on the host: [{"guid", "key", "element", "owner"}]."""
    return list(_ask(agent, "list").get("services") or [])


def sweep_dead_runs(agent, element_name: str = ELEMENT_NAME) -> list[str]:
    """Removes registrations left by killed runs of this controller (owner tag of a dead process);
    never one of a live run, of another controller, or without an owner tag. Returns what it removed."""
    by_owner: dict[str, list[str]] = {}
    for entry in list_registered(agent):
        if entry.get("element") == element_name and entry.get("owner") and tag_is_dead(entry["owner"]):
            by_owner.setdefault(entry["owner"], []).append(entry["guid"])
    removed: list[str] = []
    for owner, guids in sorted(by_owner.items()):
        removed += unregister_guids(agent, guids, owner)["removed"]
    return removed


def manual_owner() -> str:
    """The owner tag of `hvsock-matrix register` (entries kept until `unregister`): `manual:<user>@<host>`.
    tag_is_dead never calls it dead, so no run sweeps it; `unregister` from the same user and host removes it."""
    import getpass
    import socket

    return f"manual:{getpass.getuser()}@{socket.gethostname()}"


def removable_owners(entries: list[dict], guids: set[str] | None = None,
                     element_name: str = ELEMENT_NAME) -> dict[str, list[str]]:
    """{owner tag: GUIDs} that `hvsock-matrix unregister` may remove: ours (ElementName) and provably
    this user's (`manual_owner()`) or a dead run's. Never a live run's, another controller's, or an
    untagged entry. `guids` narrows to a selection."""
    mine = manual_owner()
    out: dict[str, list[str]] = {}
    for entry in entries:
        owner = entry.get("owner") or ""
        if entry.get("element") != element_name or not owner or (guids is not None and entry["guid"] not in guids):
            continue
        if owner == mine or tag_is_dead(owner):
            out.setdefault(owner, []).append(entry["guid"])
    return out


# --- around a run ---------------------------------------------------------------------------------

def hyperv_hosts(inventory) -> list:
    """The nodes that need registrations: Windows hosts (role host, os windows)."""
    return [n for n in inventory.nodes.values() if n.role == "host" and n.os == "windows"]


class RegistrationGuard:
    """Registers the run's service GUIDs on every Hyper-V host before a run; removes what it added after.

        with RegistrationGuard(inventory, agent_for=lambda node: pool.agent(node.name), cells=cells):
            ...run the cells...

    `agent_for(node)` gives the host's probe agent (the run's AgentPool owns and closes it). Every key is
    written under `owner` (default: this process's tag); xdist workers pass the controller's tag with
    keep=True, and the controller removes them at the end (harness/session.py remove_registrations) --
    or, if it was killed, the next run sweeps them. With strict=False a host that cannot be registered
    is recorded in `errors` (its cells fail on their own) instead of aborting the run.
    """

    def __init__(self, inventory, agent_for: Callable, cells: Iterable | None = None,
                 guids: Iterable[str] | None = None, keep: bool = False, strict: bool = True,
                 owner: str | None = None):
        self.inventory = inventory
        wanted = set(guids or ())
        if cells is not None:
            wanted |= guids_for_cells(cells, inventory)
        self.guids = wanted
        self.keep = keep
        self.strict = strict
        # kept on purpose (--keep-registration): tagged as `register` tags, so no later run sweeps them
        self.owner = owner or (manual_owner() if keep else owner_tag())
        self._agent_for = agent_for
        self.reports: dict[str, RegistrationReport] = {}
        self.errors: dict[str, str] = {}
        self.cleanup_errors: dict[str, str] = {}
        self.removed: dict[str, list[str]] = {}
        self.swept: dict[str, list[str]] = {}  # node -> GUIDs of killed runs removed before registering

    def __enter__(self) -> RegistrationGuard:
        if not self.guids:
            return self
        for node in hyperv_hosts(self.inventory):
            try:
                agent = self._agent_for(node)
                self.swept[node.name] = sweep_dead_runs(agent)  # a killed run's leftovers
                self.reports[node.name] = register_guids(agent, self.guids, self.owner)
            except NodeError as err:
                if self.strict:
                    self._undo()
                    raise
                self.errors[node.name] = err.message
        return self

    def _undo(self) -> None:
        for name, report in self.reports.items():
            if not report.added:
                continue
            try:
                agent = self._agent_for(self.inventory.nodes[name])
                self.removed[name] = unregister_guids(agent, report.added, self.owner)["removed"]
            except NodeError as err:
                self.cleanup_errors[name] = err.message

    def __exit__(self, *exc) -> None:
        if not self.keep:
            self._undo()

    @property
    def added(self) -> dict[str, list[str]]:
        return {name: list(r.added) for name, r in self.reports.items()}
