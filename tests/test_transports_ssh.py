"""The SSH transport against real sshd's in network namespaces (tests/netns_lab.py).

Covers what the design promises: run/spawn/put, a jump host (the target's sshd sees the jump
host's address), host keys rejected when unknown or different, accept-new learning a key, the
cached connection rebuilt once when it died, timeouts that kill the command on the node.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from harness.agents import AgentPool
from harness.errors import NodeError
from harness.transports.base import CommandTimeout
from harness.transports.ssh import SSHTransport

pytestmark = pytest.mark.netns


@pytest.fixture
def inv(netns_lab):
    return netns_lab.inventory()


@pytest.fixture
def pool(inv):
    """The run's transports: AgentPool is the only cache (a jump host's connection is its transport)."""
    made = AgentPool(inv)
    yield made
    made.close()


def with_access(node, **changes):
    return dataclasses.replace(node, access=dataclasses.replace(node.access, **changes))


def test_run_returns_rc_stdout_stderr_and_feeds_stdin(inv, pool):
    t = pool.transport("nsa")
    res = t.run(["sh", "-c", "cat; echo to-err >&2; exit 7"], timeout=20, stdin=b"fed through stdin")
    assert (res.rc, res.stdout, res.stderr) == (7, "fed through stdin", "to-err\n")
    assert t.run(["hostname", "-I"], timeout=20).stdout.split() == [inv.node("nsa").address]


def test_arguments_survive_quoting(inv, pool):
    t = pool.transport("nsb")
    weird = ["a b", "it's", '"q"', "$HOME", "`id`", "semi;colon", ""]
    res = t.run(["python3", "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", *weird], timeout=20)
    import json
    assert json.loads(res.stdout) == weird


def test_connection_is_cached_per_node(inv, pool):
    t = pool.transport("nsb")
    for _ in range(3):
        t.run(["true"], timeout=20)
    assert t.connects == 1
    assert pool.transport("nsb") is t


def test_jump_host_carries_the_connection(netns_lab, inv, pool):
    c = inv.node("nsc")
    assert c.access.jump == "nsa"
    t = pool.transport(c.name)
    res = t.run(["ss", "-Htn", "state", "established", "( sport = :22 )"], timeout=20)
    peers = {line.split()[-1].rsplit(":", 1)[0] for line in res.stdout.splitlines() if line.strip()}
    assert peers == {inv.node("nsa").address}  # the sshd on nsc sees nsa, not the controller
    # and the jump host's connection is the same cached one nsa's own commands use
    a = pool.transport("nsa")
    assert a.connects == 1


def test_spawn_streams_lines_and_kill_removes_the_process(netns_lab, inv, pool):
    t = pool.transport("nsb")
    proc = t.spawn(["sh", "-c", 'while read l; do echo "got $l"; done'])
    proc.write_line("one")
    assert proc.read_line(10) == "got one"
    assert proc.pid and proc.pid in netns_lab.pids("b")
    with pytest.raises(TimeoutError):
        proc.read_line(0.2)
    proc.kill()
    assert proc.wait(10) is not None
    deadline = time.monotonic() + 5
    while proc.pid in netns_lab.pids("b") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.pid not in netns_lab.pids("b")


def test_spawned_process_eof_is_none(inv, pool):
    t = pool.transport("nsa")
    proc = t.spawn(["echo", "only line"])
    assert proc.read_line(10) == "only line"
    assert proc.read_line(10) is None
    assert proc.wait(10) == 0


def test_put_copies_atomically_and_probe_is_deployed_once(netns_lab, inv, tmp_path, pool):
    t = pool.transport("nsc")  # through the jump host
    src = tmp_path / "payload.txt"
    src.write_text("bytes for the node\n")
    remote = f"/tmp/hvsock-netns-{netns_lab.suffix}/put-test/deeper/payload.txt"
    t.put(str(src), remote)
    assert t.run(["cat", remote], timeout=20).stdout == "bytes for the node\n"
    cmd = t.probe_command()
    run_dir = cmd[1].rsplit("/", 1)[0]  # a fresh random folder under the workdir (one exclusive mkdir), owner-only
    assert cmd[0] == "/usr/bin/python3" and cmd[1].endswith("/probe.pyz")
    assert run_dir.startswith(inv.node("nsc").access.workdir + "/hvsock-matrix.")
    assert t.probe_command() is not cmd and t.probe_command() == cmd
    listing = t.run(["ls", run_dir], timeout=20).stdout.split()
    assert listing == ["probe.pyz"]  # no temp file left
    assert t.run(["stat", "-c", "%a", run_dir], timeout=20).stdout.strip() == "700"
    t.close()
    again = pool.transport("nsc")
    assert again is not t
    assert again.run(["test", "-e", run_dir], timeout=20).rc == 1  # closing removed the run's directory


def test_command_past_its_timeout_is_killed_on_the_node(netns_lab, inv, pool):
    t = pool.transport("nsb")
    start = time.monotonic()
    with pytest.raises(CommandTimeout) as err:
        t.run(["sh", "-c", "echo started; exec sleep 60"], timeout=1.5)
    assert time.monotonic() - start < 10
    assert "still running after 1.5s" in str(err.value) and err.value.stdout == "started\n"
    time.sleep(0.2)
    assert not [p for p in netns_lab.processes("b") if "sleep 60" in p]


def test_unknown_host_key_is_rejected(netns_lab, inv, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    node = with_access(inv.node("nsb"), known_hosts=str(empty))
    with pytest.raises(NodeError) as err:
        SSHTransport(node, inv).run(["true"], timeout=20)
    msg = str(err.value)
    assert "nsb" in msg and "not in" in msg and "host_key_policy reject" in msg
    assert "\n" not in msg


def test_changed_host_key_is_rejected(netns_lab, inv, tmp_path):
    wrong = tmp_path / "known_hosts"
    a_key = Path(netns_lab.dir, "host_a.pub").read_text().split()
    wrong.write_text(f"{inv.node('nsb').address} {a_key[0]} {a_key[1]}\n")  # nsa's key for nsb's address
    node = with_access(inv.node("nsb"), known_hosts=str(wrong))
    with pytest.raises(NodeError, match="does not match"):
        SSHTransport(node, inv).run(["true"], timeout=20)


def test_accept_new_learns_and_saves_the_key(netns_lab, inv, tmp_path):
    learned = tmp_path / "learned_hosts"
    node = with_access(inv.node("nsb"), known_hosts=str(learned), host_key_policy="accept-new")
    t = SSHTransport(node, inv)
    assert t.run(["true"], timeout=20).rc == 0
    t.close()
    text = learned.read_text()
    assert inv.node("nsb").address in text
    assert Path(netns_lab.dir, "host_b.pub").read_text().split()[1] in text
    # the learned file now works under reject
    strict = SSHTransport(with_access(node, host_key_policy="reject"), inv)
    assert strict.run(["true"], timeout=20).rc == 0
    strict.close()


def test_dead_connection_is_rebuilt_once(netns_lab, inv, pool):
    t = pool.transport("nsb")
    assert t.run(["true"], timeout=20).rc == 0
    assert netns_lab.kill_connections("b"), "no sshd connection process to kill"
    deadline = time.monotonic() + 5
    while t.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert t.run(["echo", "back"], timeout=20).stdout == "back\n"
    assert t.connects == 2


def test_unreachable_node_fails_with_one_line(netns_lab, inv):
    node = with_access(inv.node("nsb"), host=netns_lab.subnet + ".99",  # on the lab bridge, no one there
                       connect_timeout=2)
    node = dataclasses.replace(node, name="nsb-ghost")
    start = time.monotonic()
    with pytest.raises(NodeError) as err:
        SSHTransport(node, inv).run(["true"], timeout=20)
    assert time.monotonic() - start < 15
    assert str(err.value).startswith("node nsb-ghost: cannot connect to root@")


def test_ssh_config_supplies_hostname_user_key_known_hosts_and_proxyjump(netns_lab, inv, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host lab-b\n  HostName {netns_lab.addr('b')}\n  User root\n  IdentityFile {netns_lab.client_key}\n"
        f"  UserKnownHostsFile {netns_lab.known_hosts}\n"
        f"Host lab-c\n  HostName {netns_lab.addr('c')}\n  User root\n  IdentityFile {netns_lab.client_key}\n"
        f"  UserKnownHostsFile {netns_lab.known_hosts}\n  ProxyJump root@{netns_lab.addr('b')}\n"
        f"Host {netns_lab.addr('b')}\n  IdentityFile {netns_lab.client_key}\n")
    monkeypatch.setenv("HOME", str(home))
    from harness.node import Access, Node
    b = Node(name="cfg-b", role="host", os="linux", family="tcp", access=Access(kind="ssh", host="lab-b"))
    t = SSHTransport(b, inv)
    assert t.settings()["hostname"] == netns_lab.addr("b")
    assert t.run(["hostname", "-I"], timeout=20).stdout.split() == [netns_lab.addr("b")]
    t.close()
    c = Node(name="cfg-c", role="host", os="linux", family="tcp",
             access=Access(kind="ssh", host="lab-c", known_hosts=netns_lab.known_hosts))
    t = SSHTransport(c, inv)
    res = t.run(["ss", "-Htn", "state", "established", "( sport = :22 )"], timeout=20)
    peers = {line.split()[-1].rsplit(":", 1)[0] for line in res.stdout.splitlines() if line.strip()}
    assert peers == {netns_lab.addr("b")}  # ProxyJump from ~/.ssh/config was used
    t.close()
