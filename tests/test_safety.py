"""No AF_VSOCK off lab nodes for any driver; secrets scrubbed; local children never get the lab marker.

All against the real runner and the real local transport: the gate must refuse before any
transport is opened (recorded by a transport factory that only notes the node names).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import secrets
from harness.agents import AgentPool
from harness.cell import Cell, Driver
from harness.errors import NodeError
from harness.inventory import LAB_NODE_ENV
from harness.node import Access, Inventory, Node
from harness.outcome import Observation, Outcome
from harness.probe import bundle
from harness.probe.common import LAB_ENV
from harness.runner import run_cell, scrub_observation
from harness.safety import template_opens_vsock
from harness.transports import open_transport
from harness.transports.local import LocalTransport, child_env

ROOT = Path(__file__).resolve().parent.parent


def _inventory(family: str, lab_node: bool = False) -> Inventory:
    me = Node(name="me", role="host", os="linux", family=family, cid=21 if family == "vsock" else None,
              address="127.0.0.1" if family == "tcp" else None, lab_node=lab_node, access=Access(kind="local"))
    return Inventory(name="ctl", path="<ctl>", nodes={"me": me})


def _run(inv: Inventory, driver: Driver) -> tuple[Observation, list[str]]:
    opened: list[str] = []

    def recording_factory(node, inventory):
        opened.append(node.name)
        return open_transport(node, inventory)

    pool = AgentPool(inv, transport_factory=recording_factory)
    try:
        obs = run_cell(Cell(scenario="S", server_on="me", bind="wildcard", client_on="me", target="loopback",
                            port=19000, driver=driver), inv, pool)
    finally:
        pool.close()
    return obs, opened


VSOCK_COMMAND = Driver(kind="command", server="socat VSOCK-LISTEN:{port} -", client="socat - VSOCK-CONNECT:{target}:{port}")


@pytest.mark.parametrize("driver", [Driver(kind="probe"), Driver(kind="socat"), VSOCK_COMMAND,
                                    Driver(kind="command", server="my-server {port}", client="my-client {target} {port}")],
                         ids=["probe", "socat", "command-vsock-template", "command-any-template"])
def test_no_driver_opens_vsock_on_a_vsock_node_that_is_not_a_lab_node(driver):
    obs, opened = _run(_inventory("vsock"), driver)
    assert obs.outcome is Outcome.E and obs.detail.startswith("refused: ")
    assert "me, which is not a lab node" in obs.detail
    assert opened == [] and obs.commands == []  # refused where planned: nothing started


@pytest.mark.parametrize("template", [
    "socat VSOCK-LISTEN:{port},fork -", "socat - vsock-connect:{target}:{port}", "socat - VSOCK:{target}:{port}",
    "probe-tool --family vsock --port {port}", "probe-tool --family=VSOCK", "probe-tool -f vsock",
    "python3 -c 'import socket; socket.socket(socket.AF_VSOCK)'", "curl vsock://{target}:{port}",
    "cat /dev/vsock", "ncat --vsock -l {port}", "ncat --vsock {target} {port}"])
def test_a_command_template_naming_vsock_is_refused_even_on_a_tcp_node(template):
    assert template_opens_vsock(template)
    obs, opened = _run(_inventory("tcp"), Driver(kind="command", server=template, client="true {port}"))
    assert obs.outcome is Outcome.E and obs.detail.startswith("refused: command template VSOCK (server) on me")
    assert opened == []


def test_tcp_command_templates_still_run():
    assert not template_opens_vsock("socat TCP-LISTEN:{port},reuseaddr - ")
    obs, opened = _run(_inventory("tcp"), Driver(kind="command", client="true {target} {port}"))
    assert obs.outcome is Outcome.O, obs.detail
    assert opened == ["me"]


def test_one_lab_node_variable_name():
    assert LAB_NODE_ENV == LAB_ENV == "HVSOCK_MATRIX_LAB_NODE"


def test_local_children_never_get_the_lab_marker_or_other_secrets(monkeypatch):
    monkeypatch.setenv(LAB_ENV, "1")
    monkeypatch.setenv("HVLAB_PASSWORD", "Hunter2Secret")
    env = child_env()
    assert LAB_ENV not in env and "HVLAB_PASSWORD" not in env and env.get("PATH") == os.environ["PATH"]
    t = LocalTransport(Node(name="me", role="host", os="linux", family="tcp", access=Access(kind="local")))
    out = t.run(["env"], timeout=30).stdout
    assert f"{LAB_ENV}=" not in out and "Hunter2Secret" not in out and "PATH=" in out
    # and the probe on this controller still refuses AF_VSOCK with the variable exported
    refused = t.run([sys.executable, str(bundle.probe_file()), "info"], timeout=60).stdout
    assert '"lab_node": false' in refused


def test_errors_and_observations_are_scrubbed(monkeypatch):
    err = NodeError("h1", "Authentication failed for ssh://tester:Hunter2Secret@h1.lab.invalid:22 (password=Hunter2Secret)")
    assert "Hunter2Secret" not in str(err) and "tester:***@h1.lab.invalid" in str(err)
    secrets.register("Zq9-env-only-value")
    obs = scrub_observation(Observation(outcome=Outcome.E, detail="smb: bad password Zq9-env-only-value",
                                        commands=["net use \\\\h /user:admin Zq9-env-only-value"]))
    assert "Zq9-env-only-value" not in obs.detail + "".join(obs.commands)


@pytest.mark.parametrize("text", [
    "smbclient -U LAB\\tester%Hunter2Secret //hv/c$",  # smbclient's DOMAIN\\user%password
    "smbclient -U tester%Hunter2Secret //hv/c$",
    "net rpc -U 'LAB\\tester%Hunter2Secret' registry",
    "logon failure: LAB\\\\tester%Hunter2Secret",  # the backslash doubled, as in a repr
    "--user=tester%Hunter2Secret",
])
def test_smbclient_style_user_password_is_scrubbed(text):
    assert "Hunter2Secret" not in secrets.scrub(text) and "%***" in secrets.scrub(text)


@pytest.mark.parametrize("text", ["progress 50%", "a%20b", "100% of 4 cells", "%s"])
def test_percent_signs_that_are_not_passwords_are_kept(text):
    assert secrets.scrub(text) == text


@pytest.mark.parametrize("user, carries", [
    ("tester:Hunter2Secret", True), ("LAB\\tester%Hunter2Secret", True), ("tester/Hunter2Secret", True),
    ("tester", False), ("LAB\\tester", False), ("tester@lab.local", False), ("HOST$", False), ("Администратор", False),
])
def test_user_names_that_carry_a_password(user, carries):
    assert secrets.credential_in_user(user) is carries


def test_password_env_values_are_registered_when_the_inventory_loads(tmp_path, monkeypatch):
    from harness.inventory import load_inventory

    monkeypatch.setenv("HVLAB_T_PASSWORD", "Xy7-registered-by-load")
    (tmp_path / "inv.yaml").write_text("inventory: l\nnodes:\n  - {name: h, role: host, os: windows, access: "
                                       "{kind: psexec, host: h.lab.invalid, password_env: HVLAB_T_PASSWORD}}\n")
    load_inventory(tmp_path / "inv.yaml")
    assert secrets.scrub("logon failure for Xy7-registered-by-load") == "logon failure for ***"


def test_secret_key_names():
    for key in ("password", "Passwd", "PWD", "client_secret", "api-key", "ApiKey", "private_key", "auth_token",
                "Authorization", "credentials", "passphrase", "token"):
        assert secrets.is_secret_key(key), key
    for key in ("password_env", "key_file", "host", "user", "author", "note"):
        assert not secrets.is_secret_key(key), key


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unwritable_results_fail_the_run(tmp_path):
    """All cells pass but results.json cannot be written: the exit code must say so."""
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "t.yaml").write_text(
        f"scenario: T\nport: {_free_tcp_port()}\ncells:\n  - server: {{on: h, bind: loopback}}\n"
        f"    client: {{on: server, target: loopback}}\n")
    (tmp_path / "inv.yaml").write_text("inventory: i\nnodes:\n  - {name: h, role: host, os: linux, family: tcp, "
                                       "address: 127.0.0.1}\n")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "history").write_text("a file where the history folder goes\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop(LAB_ENV, None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "scenarios",
                             "--inventory", "inv.yaml", "--results-dir", "r"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert "1 passed" in result.stdout, result.stdout[-2000:]
    assert "could not write the results" in result.stdout
    assert result.returncode != 0


@pytest.mark.parametrize("text", ["sshpass -p Hunter2Secret ssh h", "tool --password=Hunter2Secret", "tool --password Hunter2Secret",
                                  "plink -pw Hunter2Secret h"])
def test_password_flags_are_scrubbed(text):
    assert "Hunter2Secret" not in secrets.scrub(text)


@pytest.mark.parametrize("text", ["ssh -p 22 h", "socat -p 5 x", "tool --passphrase-file f", "ConsoleApp1.exe /server {bind}",
                                  "socat VSOCK-LISTEN:{port},reuseaddr,fork TCP:localhost:22"])
def test_ordinary_command_lines_carry_no_credential(text):
    assert not secrets.credential_in_text(text) and secrets.scrub(text) == text


def test_no_driver_opens_a_hybrid_vsock_socket_off_a_lab_node():
    """A hybrid host's Unix sockets are a vhost-user backend's: lab nodes only, like AF_VSOCK."""
    me = Node(name="me", role="host", os="linux", family="hybrid", access=Access(kind="local"))
    guest = Node(name="g", role="vm", os="linux", family="vsock", parent="me", cid=31,
                 hybrid_uds="/run/hvlab/hybrid/g.vsock", access=Access(kind="local"))
    inv = Inventory(name="ctl", path="<ctl>", nodes={"me": me, "g": guest})
    opened: list[str] = []
    pool = AgentPool(inv, transport_factory=lambda node, inventory: opened.append(node.name))
    try:
        obs = run_cell(Cell(scenario="S", server_on="me", bind="wildcard", client_on="me", target="node:g",
                            port=19000), inv, pool)
    finally:
        pool.close()
    assert obs.outcome is Outcome.E and obs.detail.startswith("refused: probe hybrid vsock UDS (server) on me")
    assert opened == []
