"""The command driver against real programs on this machine (local transport, tcp on 127.0.0.1).

CONSOLE_APP mimics the documents' ConsoleApp1 (../shared/seeds/001_*.txt): it prints `Process ID: N`
BEFORE Bind() and Listen(), prints nothing when it listens, and a Bind that throws ends it with a
.NET unhandled SocketException on stderr. Its first line therefore proves nothing about listening.
"""
from __future__ import annotations

import socket
import sys
import textwrap

import pytest

from harness import timeouts
from harness.agents import AgentPool
from harness.cell import Driver
from harness.errors import InputError
from harness.node import Access, Inventory, Node
from harness.outcome import Outcome
from harness.runner import run_cell
from harness.scenario import expand, load_scenario
from tests.test_drivers import cell, free_port, local_inventory
from tests.test_hyperv_matrix_a import fake_lab_inventory, lab  # noqa: F401 (fixture)

CONSOLE_APP = textwrap.dedent('''
    import os, socket, sys, time
    mode, port = sys.argv[1], int(sys.argv[2])
    opts = sys.argv[3:]
    delay = float(opts[opts.index("--delay") + 1]) if "--delay" in opts else 0.0
    def dotnet_exception(code, text, frames):
        sys.stderr.write(f"Unhandled exception. System.Net.Sockets.SocketException ({code}): {text}\\n")
        for frame in frames:
            sys.stderr.write(f"   at {frame}\\n")
        sys.stderr.flush()
        sys.exit(134)  # .NET aborts on an unhandled exception (SIGABRT on Linux)
    if mode == "server":
        print(f"Process ID: {os.getpid()}", flush=True)  # Program.cs: before server.Bind()
        time.sleep(delay)
        server = socket.socket()
        try:
            server.bind(("127.0.0.1", port))
        except OSError:
            dotnet_exception(10048, "Only one usage of each socket address (protocol/network address/port) "
                             "is normally permitted.", ["System.Net.Sockets.Socket.DoBind(EndPoint endPointSnapshot, "
                             "SocketAddress socketAddress)", "System.Net.Sockets.Socket.Bind(EndPoint localEP)",
                             "ConsoleApp1.Program.Main(String[] args)"])
        server.listen(5)
        if "--say-listening" in opts:
            print(f"Listening on {port}", flush=True)
        server.settimeout(60)
        while True:
            conn, _ = server.accept()
            text = conn.recv(1024).decode()
            print(f"connected: {text}", flush=True)
            conn.sendall(("Hello: " + text).encode())
            conn.close()
    else:
        time.sleep(delay)
        client = socket.socket()
        try:
            client.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            dotnet_exception(10061, "No connection could be made because the target machine actively refused it.",
                             ["System.Net.Sockets.Socket.Connect(EndPoint remoteEP)"])
        client.sendall(opts[opts.index("--say") + 1].encode())
        print(client.recv(1024).decode(), flush=True)
''')


@pytest.fixture
def app(tmp_path):
    path = tmp_path / "consoleapp1.py"
    path.write_text(CONSOLE_APP)
    return f"{sys.executable} {path}"


@pytest.fixture
def pool():
    p = AgentPool(local_inventory())
    yield p
    p.close()


def held_port() -> socket.socket:
    """A port bound (not listening) by someone else: bind() fails with EADDRINUSE, connect() is refused."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    return held


def command(app: str, server_opts: str = "", client_opts: str = "", ready: str | None = None) -> Driver:
    return Driver(kind="command", server=f"{app} server {{port}} {server_opts}",
                  client=f"{app} client {{port}} --say {{payload}} {client_opts}", ready=ready)


def test_a_bind_that_throws_after_the_process_id_line_is_B_not_X(app, pool):
    with held_port() as held:
        obs = run_cell(cell("loopback", "loopback", held.getsockname()[1], driver=command(app)), pool.inventory, pool)
    assert (obs.outcome, obs.bind_errno_name, obs.bind_errno) == (Outcome.B, "WSAEADDRINUSE", 10048), obs.detail
    assert obs.errno is None and "could not bind" in obs.detail and "SocketException (10048)" in obs.detail
    assert len(obs.commands) == 1  # the client never ran against a server that was not there


def test_a_server_whose_first_line_comes_before_listen_is_not_raced(app, pool):
    """ConsoleApp1 takes a while between `Process ID` and Listen(): the client waits for the listener."""
    obs = run_cell(cell("loopback", "loopback", free_port(), driver=command(app, "--delay 1.5")), pool.inventory, pool)
    assert (obs.outcome, obs.reply.strip()) == (Outcome.O, "Hello: World!"), obs.detail
    assert "ss lists a listener" not in obs.detail


def test_a_ready_pattern_is_the_line_that_means_listening(app, pool):
    d = command(app, "--delay 1 --say-listening", ready=r"^Listening on \d+$")
    obs = run_cell(cell("loopback", "loopback", free_port(), driver=d), pool.inventory, pool)
    assert obs.outcome is Outcome.O, obs.detail
    never = command(app, "--delay 1", ready="^Listening")  # listens, but never says so
    cut = run_cell(cell("loopback", "loopback", free_port(), timeout=1, driver=never), pool.inventory, pool)
    assert cut.outcome is Outcome.E and "no line matching ready" in cut.detail, cut.detail


def test_where_nothing_tells_a_server_that_died_while_the_client_was_refused_is_B(app, monkeypatch):
    """A Windows node has no `ss`: the server is assumed listening once alive after its start margin.
    Here it dies after the margin (its Bind throws late) and the client is refused: B, never X."""
    monkeypatch.setattr(timeouts, "START_MARGIN_LOCAL", 0.5)
    win = Node(name="win", role="host", os="windows", family="tcp", address="127.0.0.1", access=Access(kind="local"))
    inv = Inventory(name="w", path="<w>", nodes={"win": win})
    with AgentPool(inv) as pool, held_port() as held:
        d = command(app, "--delay 1", "--delay 2")
        obs = run_cell(cell("loopback", "loopback", held.getsockname()[1], server_on="win", client_on="win", driver=d),
                       inv, pool)
        assert (obs.outcome, obs.bind_errno_name) == (Outcome.B, "WSAEADDRINUSE"), obs.detail
        assert obs.errno_name is None and len(obs.commands) == 2
        # and a server that lives, but on another port, leaves the refusal an X
        d = Driver(kind="command", server=f"{app} server {free_port()}", client=f"{app} client {{port}} --say x")
        x = run_cell(cell("loopback", "loopback", free_port(), server_on="win", client_on="win", driver=d), inv, pool)
        assert (x.outcome, x.errno_name) == (Outcome.X, "WSAECONNREFUSED"), x.detail
        assert x.extra.get("server_ready", "").startswith("assumed")


def test_a_ready_pattern_is_checked_when_the_scenario_is_read(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text('scenario: R\nport: 30000\ndriver: {kind: command, server: "s {port}", client: "c {port}", '
                    'ready: "^Listening"}\ncells:\n  - server: {on: a, bind: wildcard}\n    client: {on: b, target: '
                    'loopback}\n')
    (only,) = expand(load_scenario(good), None)
    assert only.driver.ready == "^Listening"
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("^Listening", "(unclosed"))
    with pytest.raises(InputError, match=r"ready: not a regular expression") as err:
        load_scenario(bad)
    assert "\n" not in str(err.value)


def test_a_windows_template_reaches_the_node_with_its_path_whole(lab):  # noqa: F811 (fixture)
    """Over psexec to FakeHyperVLab: the server program PAExec's wrapper starts is the template's own
    path and arguments (shlex would have made it C:tempConsoleApp1.exe)."""
    inventory = fake_lab_inventory()
    d = Driver(kind="command", server=r"C:\temp\ConsoleApp1.exe /server any",
               client=r'"C:\Program Files\Hv\ConsoleApp1.exe" /client parent')
    with AgentPool(inventory) as pool:
        obs = run_cell(cell("wildcard", "parent", 19000, server_on="hv-host", client_on="win-vm", driver=d),
                       inventory, pool)
    assert next(argv for _, argv in lab.commands if "ConsoleApp1" in argv[0]) == [
        r"C:\temp\ConsoleApp1.exe", "/server", "any"]
    assert obs.commands[0] == r"hv-host: C:\temp\ConsoleApp1.exe /server any"
    assert obs.outcome is Outcome.E  # the fake lab has no ConsoleApp1: the server ends at once, never X
