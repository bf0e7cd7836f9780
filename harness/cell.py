"""One cell of a connectivity matrix: who serves, how it binds, who connects, to what.

Cells are built by harness/scenario/ (expansion.py) from a scenario file and an inventory and are the
unit that pytest collects, the runner runs and the reports lay out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from harness import timeouts
from harness.outcome import Outcome

DriverKind = Literal["probe", "socat", "command"]
SocketType = Literal["stream", "seqpacket", "dgram"]
SOCKET_TYPES = ("stream", "seqpacket", "dgram")  # stream is the documents' type and the default
# phases (issue 21), each after a tools/testing/vsock/vsock_test.c case: harness/probe/listener.py
# and client.py say which; the first of each is the default (a listener, a connect)
SERVER_PHASES = ("listening", "bound", "none", "closed")
CLIENT_PHASES = ("connect", "retry", "bound", "second-cid")


def variant_of(server_phase: str | None, client_phase: str | None, unprivileged: bool = False) -> str:
    """`/server-bound/unprivileged/client-retry`: what a cell does beyond listen + connect ("" for nothing)."""
    parts = []
    if server_phase not in (None, SERVER_PHASES[0]):
        parts.append(f"server-{server_phase}")
    if unprivileged:
        parts.append("unprivileged")
    if client_phase not in (None, CLIENT_PHASES[0]):
        parts.append(f"client-{client_phase}")
    return "".join("/" + p for p in parts)


# the placeholders of command-driver templates (harness/drivers/command.py fills them)
TEMPLATE_FIELDS = ("bind", "target", "addr", "port", "service", "payload", "vm_id", "cid", "timeout", "socket")


@dataclass(frozen=True)
class Driver:
    """How the server and client of a cell are realised on their nodes."""

    kind: DriverKind = "probe"
    # command driver only: templates with the TEMPLATE_FIELDS placeholders
    server: str | None = None
    client: str | None = None
    # command driver only: a regex; the server listens once a line of its stdout matches it
    ready: str | None = None


@dataclass(frozen=True)
class Cell:
    scenario: str  # scenario name, e.g. "A"
    server_on: str  # inventory node name (or the unresolved location token when skipped)
    bind: str  # bind token as written: wildcard, loopback, children, parent, self, vm:<node>, GUID, CID
    client_on: str
    target: str  # target token: loopback, parent, children, broadcast, self, server, vm:<node>, GUID, CID
    port: int  # vsock port; the Hyper-V service GUID is the vsock template of it unless service is set
    expected: Outcome | None = None  # None = unknown (the first run documents it)
    expected_errno: str | None = None  # "ECONNRESET" in `expect: X ECONNRESET` (B: the bind errno)
    label: str | None = None  # e.g. "A1" for documented cells
    source: str | None = None  # e.g. "001, case 1 (host WILDCARD, VM client PARENT)"
    disputed: bool = False
    note: str | None = None
    driver: Driver = field(default_factory=Driver)
    service: str | None = None  # explicit Hyper-V service GUID (canonical lowercase)
    payload: str = "World!"
    timeout: float = timeouts.CELL_TIMEOUT  # seconds for the client's whole attempt
    skip_reason: str | None = None  # set when the inventory lacks a node this cell needs
    defined_at: str = ""  # "file:line" of the cell or axes block
    socket: SocketType = "stream"
    server_phase: str = "listening"  # SERVER_PHASES
    client_phase: str = "connect"  # CLIENT_PHASES
    unprivileged: bool = False  # the server binds as nobody (probe/unprivileged.py)
    expect_peer: str | None = None  # accept()'s peer CID: "client" (the client as the server sees it) or a number

    @property
    def variant(self) -> str:
        return variant_of(self.server_phase, self.client_phase, self.unprivileged)

    @property
    def id(self) -> str:
        """Stable, readable id: `A1[hv-host:wildcard-from-win-vm:parent]`, `C3[...+socat]`.

        Only characters pytest's -k grammar takes in one identifier (word characters and
        `: + - . [ ] \\ /`, _pytest/mark/expression.py), so `-k '<whole id>'` selects the cell.
        A socket type other than stream shows as `/seqpacket` after the target, then the phases
        (`/server-bound`, `/unprivileged`, `/client-retry`).
        """
        return cell_id(self.label or self.scenario, self.server_on, self.bind, self.client_on, self.target,
                       self.driver.kind, self.socket, self.variant)


def cell_id(head: str, server_on: str, bind: str, client_on: str, target: str, driver: str | None,
            socket: str | None = None, variant: str | None = None) -> str:
    suffix = "" if socket in (None, "stream") else f"/{socket}"
    suffix += variant or ""
    suffix += "" if driver in (None, "probe") else f"+{driver}"
    return f"{head}[{server_on}:{bind}-from-{client_on}:{target}{suffix}]"


_OLD_ID = re.compile(r"^(?P<head>[^\[]*)\[(?P<server>.*?)<-(?P<client>.*?)(?:@(?P<driver>[a-z]+))?\]$")


def current_id(cell_id_text: str) -> str:
    """An id from a results file written before 0.2 (`A1[h:wildcard<-v:parent@socat]`) in today's form,
    so `--baseline` and `diff` still match last night's cells."""
    old = _OLD_ID.match(cell_id_text)
    if old is None:
        return cell_id_text
    suffix = f"+{old['driver']}" if old["driver"] else ""
    return f"{old['head']}[{old['server']}-from-{old['client']}{suffix}]"
