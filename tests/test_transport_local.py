"""The local transport: subprocess on the controller, optionally inside a network namespace."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.errors import NodeError
from harness.node import Access, Node
from harness.probe import bundle
from harness.transports import open_transport
from harness.transports.base import CommandTimeout
from harness.transports.local import LocalTransport


def local_node(**access) -> Node:
    return Node(name="ctl", role="host", os="linux", family="tcp", address="127.0.0.1", access=Access(**access))


def test_run_spawn_and_timeout_kill(tmp_path):
    t = open_transport(local_node())
    assert isinstance(t, LocalTransport)
    res = t.run(["sh", "-c", "cat; echo e >&2; exit 4"], timeout=10, stdin=b"in")
    assert (res.rc, res.stdout, res.stderr) == (4, "in", "e\n")
    proc = t.spawn(["sh", "-c", "read x; echo got $x; exec sleep 60"])
    proc.write_line("it")
    assert proc.read_line(5) == "got it"
    proc.kill()
    assert proc.wait(5) is not None
    start = time.monotonic()
    with pytest.raises(CommandTimeout):
        t.run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - start < 5


def test_probe_is_used_in_place_or_copied_to_a_workdir(tmp_path):
    assert LocalTransport(local_node()).probe_command()[1] == str(bundle.probe_file())
    t = LocalTransport(local_node(workdir=str(tmp_path / "w")))
    cmd = t.probe_command()
    run_dir = Path(cmd[1]).parent  # a fresh random folder per run (one exclusive mkdir), owner-only
    assert run_dir.parent == tmp_path / "w" and run_dir.name.startswith("hvsock-matrix.")
    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert Path(cmd[1]).read_bytes() == bundle.probe_bytes()
    assert sorted(p.name for p in run_dir.iterdir()) == ["probe.pyz"]
    again = LocalTransport(local_node(workdir=str(tmp_path / "w"))).probe_command()
    assert Path(again[1]).parent != run_dir  # the next run never reuses (or trusts) a directory
    t.close()
    assert not run_dir.exists()  # the run's directory leaves with the run
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [Path(again[1]).parent.name]


@pytest.mark.netns
def test_netns_prefix_runs_inside_the_namespace(netns_lab):
    t = LocalTransport(local_node(netns=netns_lab.ns("b")))
    assert t.run(["hostname", "-I"], timeout=10).stdout.split() == [netns_lab.addr("b")]
    proc = t.spawn(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5  # ip netns exec enters the namespace, then execs in place
        while proc.pid not in netns_lab.pids("b") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.pid in netns_lab.pids("b")
    finally:
        proc.kill()


def test_a_probe_copy_that_does_not_match_is_never_run(tmp_path):
    t = LocalTransport(local_node(workdir=str(tmp_path / "w")))
    real_write = t.write_file

    def tampering_write(remote_path, data):  # what lands on the node is not what was sent
        real_write(remote_path, data)
        Path(remote_path).write_text("import os  # planted\n")

    t.write_file = tampering_write
    with pytest.raises(NodeError, match="does not match ours"):
        t.probe_command()
