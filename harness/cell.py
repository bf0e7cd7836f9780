"""One cell of a connectivity matrix: who serves, how it binds, who connects, to what.

Cells are built by harness/scenario.py from a scenario file and an inventory and are the
unit that pytest collects, the runner runs and the reports lay out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.outcome import Outcome

DriverKind = Literal["probe", "socat", "command"]
SocketType = Literal["stream", "seqpacket", "dgram"]
SOCKET_TYPES = ("stream", "seqpacket", "dgram")  # stream is the documents' type and the default


# the placeholders of command-driver templates (harness/drivers/command.py fills them)
TEMPLATE_FIELDS = ("bind", "target", "addr", "port", "service", "payload", "vm_id", "cid", "timeout", "socket")


@dataclass(frozen=True)
class Driver:
    """How the server and client of a cell are realised on their nodes."""

    kind: DriverKind = "probe"
    # command driver only: templates with the TEMPLATE_FIELDS placeholders
    server: str | None = None
    client: str | None = None


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
    timeout: float = 10.0  # seconds for the client's whole attempt
    skip_reason: str | None = None  # set when the inventory lacks a node this cell needs
    defined_at: str = ""  # "file:line" of the cell or axes block
    socket: SocketType = "stream"

    @property
    def id(self) -> str:
        """Stable, readable id: `A1[hv-host:wildcard<-win-vm:parent]`, usable with -k.

        A socket type other than stream shows as `/seqpacket` after the target.
        """
        head = self.label or self.scenario
        suffix = "" if self.socket == "stream" else f"/{self.socket}"
        suffix += "" if self.driver.kind == "probe" else f"@{self.driver.kind}"
        return f"{head}[{self.server_on}:{self.bind}<-{self.client_on}:{self.target}{suffix}]"
