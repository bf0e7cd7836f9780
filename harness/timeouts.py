"""Every time budget of the controller in one place, so one can read what a cell may cost.

Two inputs size everything: T, the cell's timeout (scenario `timeout`, default CELL_TIMEOUT),
the budget of the connection itself; and C, a node's `access.connect_timeout` (inventory,
default NODE_CONNECT_TIMEOUT), which sizes anything that starts a process or a connection on
that node (a nested lab guest needs minutes). The rest are margins for slow machines. A cell's
whole budget, probe driver (`cell_budget` computes it, the tests check it against the agents):

    once per node and run:  SSH connect (C)  +  probe session's first line (2*C + SESSION_START)
    per cell:
      listen answer        MARGIN + LISTEN_ANSWER        the server node says "listening"
        (the listener itself lives 2*T + LISTEN_GRACE on the node, then exits on its own)
      connect answer       T + T + MARGIN                whole attempt + connect timeout + margin
      stop answer          MARGIN + STOP_ANSWER
    socat / command drivers: each program may take T + start_margin(C) (its process start).

psexec (Windows nodes): opening a host's pypsexec Client may take psexec_open(C) = 4C +
PSEXEC_SERVICE_SETUP, then its sockets are closed; a call may take its own timeout + PSEXEC_CALL_GRACE
from the moment it owns the Client (queueing behind other cells' calls is not counted); one SMB file
operation PSEXEC_FILE_CALL; a Client's teardown PSEXEC_CLOSE.

Changing a number here changes it everywhere: no other file in harness/ passes a number as a
timeout (tests/test_timeouts.py checks), except the probe (one stdlib-only file copied to
nodes, its own defaults come from the controller's requests) and the lab-in-a-box's boot steps
(harness/lab/, sized for qemu under TCG, not for cells).
"""
from __future__ import annotations

# -- inputs' defaults -------------------------------------------------------------------------
CELL_TIMEOUT = 10.0  # T: a cell's connect (+echo) attempt, unless the scenario says otherwise
NODE_CONNECT_TIMEOUT = 30.0  # C: reaching a node (SSH/psexec), unless the inventory says otherwise
MAX_TIMEOUT = 86400.0  # a day: longer is a typo, and would overflow thread/socket timeouts

# -- probe agents (harness/agents/) -----------------------------------------------------------
MARGIN = 15.0  # a probe answer may take this long beyond its operation's own timeout (slow nested guests)
SESSION_IDLE = 900.0  # a resident probe session exits by itself after this long without a request
SESSION_START = 60.0  # beyond 2*C: a resident session's first line (python start on a busy guest)
LISTEN_ANSWER = 10.0  # beyond MARGIN: the answer to listen
STOP_ANSWER = 10.0  # beyond MARGIN: the answer to stop
INFO_ANSWER = 30.0  # beyond MARGIN: the answer to info (facts: registry, modules, socat -V)
ONESHOT_START = 60.0  # beyond C + MARGIN: a one-shot `probe serve` printing "listening"; `probe info`
PROCESS_EXIT = 5.0  # a process told to end (EOF, bye, kill) has this long to exit
STOP_DRAIN = 0.2  # reading what a one-shot server already printed, per line, when it is stopped

# -- drivers (harness/drivers/) ---------------------------------------------------------------
LISTEN_GRACE = 30.0  # the probe's listener outlives the client's whole attempt (2*T) by this much
START_MARGIN_LOCAL = 5.0  # a program's start on this machine; remote nodes: max(this, C)
READY_POLL = 0.05  # how often a spawned server's readiness is looked at while a watcher runs

# -- transports (harness/transports/) ---------------------------------------------------------
HOUSEKEEPING = 60.0  # mkdir, put, sha256 of the probe: calls without a timeout of their own
REMOTE_KILL = 15.0  # `kill -KILL` over SSH
PSEXEC_CALL_GRACE = 15.0  # past a command's own timeout before the controller gives up on the Client
PSEXEC_KILL_GRACE = 3.0  # for a killed child's wrapper to write its exit code
PSEXEC_TASKKILL = 30.0  # taskkill /T /F
PSEXEC_SWEEP = 120.0  # listing and removing a killed run's PAExec services and exes
PSEXEC_BROKEN_RETIRE = 300.0  # a hung pypsexec Client's call may still finish and free its service name
PSEXEC_SERVICE_SETUP = 60.0  # beyond C: copy PAExec-*.exe to ADMIN$ and create its service (pypsexec create_service)
PSEXEC_FILE_CALL = 60.0  # one SMB file operation (open/read/write/remove) on the admin share
PSEXEC_CLOSE = 60.0  # a Client's teardown: run folder, its own service and exe, both SMB connections
PSEXEC_ABORT = 5.0  # a stalled connect's thread, its sockets closed, has this long to give up
PSEXEC_QUEUE_POLL = 0.05  # how often a call queued for a host's Client looks whether that Client broke

# -- Hyper-V host scripts (harness/hyperv/, harness/doctor/) ----------------------------------
REGISTRATION = 120.0  # the probe adds/removes/lists GuestCommunicationServices keys (winreg)
VMIDS_SCRIPT = 60.0  # Get-VM
WINDOWS_FACTS_SCRIPT = 120.0  # doctor's facts of a Windows node
LOCAL_TOOL = 10.0  # `socat -V` on this machine


def start_margin(connect_timeout: float, local: bool) -> float:
    """How long beyond T a program started on a node may take: its process start."""
    return START_MARGIN_LOCAL if local else max(START_MARGIN_LOCAL, float(connect_timeout))


def psexec_open(connect_timeout: float) -> float:
    """A pypsexec Client's whole start, each step sized by C: TCP connect and SMB negotiate, session setup
    (smbprotocol waits on its own keep-alive otherwise: ~2 x 600 s), the PAExec service, the SMB files session."""
    return 4 * float(connect_timeout) + PSEXEC_SERVICE_SETUP


def session_first_line(connect_timeout: float) -> float:
    return 2 * float(connect_timeout) + SESSION_START


def listener_lifetime(cell_timeout: float) -> float:
    return 2 * float(cell_timeout) + LISTEN_GRACE


def listen_answer(margin: float = MARGIN) -> float:
    return margin + LISTEN_ANSWER


def connect_answer(timeout: float, connect_timeout: float | None, margin: float = MARGIN) -> float:
    return float(timeout) + float(timeout if connect_timeout is None else connect_timeout) + margin


def stop_answer(margin: float = MARGIN) -> float:
    return margin + STOP_ANSWER


def info_answer(margin: float = MARGIN) -> float:
    return margin + INFO_ANSWER


def oneshot_listening(connect_timeout: float, margin: float = MARGIN) -> float:
    return float(connect_timeout) + margin + ONESHOT_START


def oneshot_connect(timeout: float, connect_timeout: float | None, node_connect_timeout: float,
                    margin: float = MARGIN) -> float:
    return float(timeout) + float(connect_timeout or 0) + margin + float(node_connect_timeout)


def oneshot_info(margin: float = MARGIN) -> float:
    return margin + ONESHOT_START


def cell_budget(cell_timeout: float = CELL_TIMEOUT, server_connect_timeout: float = NODE_CONNECT_TIMEOUT,
                client_connect_timeout: float = NODE_CONNECT_TIMEOUT) -> dict[str, float]:
    """The longest a probe-driver cell can wait, part by part, and in total (seconds)."""
    parts = {
        "server: node connection and probe session start (once per run)":
            server_connect_timeout + session_first_line(server_connect_timeout),
        "client: node connection and probe session start (once per run)":
            client_connect_timeout + session_first_line(client_connect_timeout),
        "listen answer": listen_answer(),
        "connect answer": connect_answer(cell_timeout, cell_timeout),
        "stop answer": stop_answer(),
    }
    parts["total"] = sum(parts.values())
    return parts
