"""Errno-level expectations and the socket dimension in files, verdicts, flips, matrices (issue 14).

Pure: scenario text in, cells / verdicts / matrices / rewritten scenario text out.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.cell import Cell
from harness.errors import InputError
from harness.judgement import flip_between, judge
from harness.matrix import build_report
from harness.outcome import Observation, Outcome
from harness.results import CellResult, Run, write_json_atomic
from harness.scenario import expand, load_scenario

SCENARIO = """\
# a comment that must survive
scenario: S
port_base: 30000
axes:
  server.on: [a]
  server.bind: [any]
  client.on: [b]
  client.target: [server, loopback]
  socket: [stream, seqpacket]
cells:
  - label: S-NOLISTENER
    server: {on: a, bind: any}
    client: {on: b, target: loopback}
    expect: X            # measured by hand
    source: "somewhere"
  - {label: S-FLOW, server: {on: a, bind: local}, client: {on: b, target: server}, expect: X, socket: seqpacket}
  - label: S-ECHO
    server: {on: a, bind: any}
    client: {on: b, target: server}
    expect: O
  - label: S-DIFFERS
    server: {on: a, bind: self}
    client: {on: b, target: server}
    expect: X ECONNREFUSED
"""


def write(tmp_path: Path, text: str = SCENARIO, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_socket_axis_makes_one_cell_per_type_with_the_type_in_the_id(tmp_path):
    cells = expand(load_scenario(write(tmp_path)), None)
    ids = [c.id for c in cells]
    assert "S-FLOW[a:loopback-from-b:server/seqpacket]" in ids
    assert "S[a:wildcard-from-b:loopback/seqpacket]" in ids
    # the explicit stream cells replaced their axes twins; the seqpacket twins stay
    assert "S-NOLISTENER[a:wildcard-from-b:loopback]" in ids and "S[a:wildcard-from-b:loopback]" not in ids
    assert len(ids) == len(set(ids)) == 6
    assert {c.socket for c in cells} == {"stream", "seqpacket"}


def test_expectation_with_errno_is_split_into_outcome_and_name(tmp_path):
    text = SCENARIO.replace("expect: X            #", "expect: x wsaeconnreset  #")
    cells = {c.label: c for c in expand(load_scenario(write(tmp_path, text)), None) if c.label}
    assert (cells["S-NOLISTENER"].expected, cells["S-NOLISTENER"].expected_errno) == (Outcome.X, "WSAECONNRESET")
    assert (cells["S-ECHO"].expected, cells["S-ECHO"].expected_errno) == (Outcome.O, None)


@pytest.mark.parametrize("value, message", [
    ("O ECONNRESET", "only X and B carry an errno"),
    ("X ENOTANERRNO", "unknown errno 'ENOTANERRNO'"),
    ("X ECONNRESET later", "unknown expectation"),
])
def test_bad_errno_expectations_name_file_and_line(tmp_path, value, message):
    path = write(tmp_path, SCENARIO.replace("expect: O", f"expect: {value}"))
    with pytest.raises(InputError) as err:
        load_scenario(path)
    assert str(err.value).startswith(f"{path}:20:") and message in str(err.value)


def test_bad_socket_type_names_file_and_line(tmp_path):
    path = write(tmp_path, SCENARIO.replace("socket: [stream, seqpacket]", "socket: [stream, raw]"))
    with pytest.raises(InputError) as err:
        load_scenario(path)
    assert str(err.value).startswith(f"{path}:9:") and "unknown socket type 'raw'" in str(err.value)


def cell(expected=Outcome.X, errno="ECONNRESET"):
    return Cell(scenario="K", server_on="vm21", bind="any", client_on="l1", target="loopback", port=1,
                expected=expected, expected_errno=errno, label="K1")


def test_wrong_errno_fails_naming_both():
    v = judge(cell(), Observation(Outcome.X, errno_name="ETIMEDOUT", elapsed_ms=3000))
    assert v.kind == "fail"
    assert v.message.startswith("expected X ECONNRESET, observed X ETIMEDOUT 3000ms")
    assert "errno ETIMEDOUT is not ECONNRESET" in v.message


def test_right_errno_passes_and_bind_errno_is_checked_for_B():
    assert judge(cell(), Observation(Outcome.X, errno_name="ECONNRESET", elapsed_ms=1)).kind == "pass"
    b = cell(Outcome.B, "EADDRNOTAVAIL")
    assert judge(b, Observation(Outcome.B, bind_errno_name="EADDRNOTAVAIL")).kind == "pass"
    v = judge(b, Observation(Outcome.B, bind_errno_name="EINVAL"))
    assert v.kind == "fail" and "EINVAL" in v.message and "EADDRNOTAVAIL" in v.message
    v = judge(cell(), Observation(Outcome.O, elapsed_ms=2))
    assert v.kind == "fail" and v.message.startswith("expected X ECONNRESET, observed O")


def test_errno_change_is_a_flip_and_O_to_O_cannot_be():
    old = Observation(Outcome.X, errno_name="ECONNRESET")
    assert flip_between(old, Observation(Outcome.X, errno_name="ETIMEDOUT")) == "X ECONNRESET->X ETIMEDOUT"
    assert flip_between(Observation(Outcome.B, bind_errno_name="EADDRNOTAVAIL"),
                        Observation(Outcome.B, bind_errno_name="EINVAL")) == "B EADDRNOTAVAIL->B EINVAL"
    assert flip_between(Observation(Outcome.O, errno_name=None), Observation(Outcome.O)) is None
    assert flip_between(old, Observation(Outcome.O)) == "X->O"


def result(server, target, socket, observed, errno=None, expected=None, expected_errno=None):
    c = Cell("K", server, "any", "l1", target, 1, expected, expected_errno=expected_errno, socket=socket)
    return CellResult.from_cell(c, Observation(observed, errno_name=errno))


def test_matrix_puts_socket_types_side_by_side_and_counts_errno_mismatches():
    run = Run("r", {}, [
        result("vm21", "server", "stream", Outcome.O),
        result("vm21", "loopback", "stream", Outcome.X, "ECONNRESET", Outcome.X, "ETIMEDOUT"),
        result("vm21", "server", "seqpacket", Outcome.O),
        result("vm21", "loopback", "seqpacket", Outcome.X, "ECONNRESET"),
    ])
    [matrix] = build_report(run).matrices
    assert matrix.columns == ["l1:server", "l1:server/seqpacket", "l1:loopback", "l1:loopback/seqpacket"]
    [mismatch] = build_report(run).mismatches
    assert mismatch.id == "K[vm21:any-from-l1:loopback]"


def measured_run(tmp_path: Path) -> Path:
    def obs(outcome, errno=None):
        return Observation(outcome, errno_name=errno, elapsed_ms=1.0)
    cells = [
        Cell("S", "a", "any", "b", "loopback", 30000, Outcome.X, label="S-NOLISTENER"),
        Cell("S", "a", "local", "b", "server", 30001, Outcome.X, label="S-FLOW", socket="seqpacket"),
        Cell("S", "a", "any", "b", "server", 30002, Outcome.O, label="S-ECHO"),
        Cell("S", "a", "self", "b", "server", 30003, Outcome.X, expected_errno="ECONNREFUSED", label="S-DIFFERS"),
    ]
    observed = [obs(Outcome.X, "ECONNRESET"), obs(Outcome.X, "ESOCKTNOSUPPORT"), obs(Outcome.O),
                obs(Outcome.O)]
    run = Run("20261130T000000Z-0000a1", {}, [CellResult.from_cell(c, o) for c, o in zip(cells, observed, strict=False)])
    return write_json_atomic(tmp_path / "results.json", run.to_dict())


def test_expect_command_writes_measured_errnos_and_keeps_the_file(tmp_path, capsys):
    scenario = write(tmp_path)
    assert cli.main(["expect", "--from", str(measured_run(tmp_path)), "--into", str(scenario)]) == 0
    text = scenario.read_text()
    assert "    expect: X ECONNRESET            # measured by hand\n" in text
    assert "expect: X ESOCKTNOSUPPORT, socket: seqpacket}" in text
    assert text.startswith("# a comment that must survive\n")
    assert "expect: X ECONNREFUSED\n" in text  # measured O: a finding, left as documented
    out = capsys.readouterr().out
    assert f"{scenario}:14: S-NOLISTENER: expect X -> X ECONNRESET" in out
    assert "S-DIFFERS: documented X ECONNREFUSED, measured O: left as is" in out
    cells = {c.label: c for c in expand(load_scenario(scenario), None) if c.label}
    assert cells["S-FLOW"].expected_errno == "ESOCKTNOSUPPORT"
    # a second pass has nothing left to write
    assert cli.main(["expect", "--from", str(tmp_path / "results.json"), "--into", str(scenario)]) == 0
    assert "wrote 0 errno(s)" in capsys.readouterr().out


def test_expect_dry_run_writes_nothing(tmp_path, capsys):
    scenario = write(tmp_path)
    cli.main(["expect", "--dry-run", "--from", str(measured_run(tmp_path)), "--into", str(scenario)])
    assert scenario.read_text() == SCENARIO
    assert "would write 2 errno(s)" in capsys.readouterr().out
