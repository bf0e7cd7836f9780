"""`hvsock-matrix diff A B --twins MAP`: a hybrid vsock matrix next to the kernel host's, cell by twin cell.

The two runs measure the same bind/target tokens on different nodes (kernel: l1, vm21, vm22; hybrid:
l1-hybrid, vm31, vm32), so ids never match; the pairing goes through the node map.
"""
from __future__ import annotations

import pytest

from harness.cell import Cell
from harness.cli import main
from harness.outcome import Observation, Outcome
from harness.report.run_diff import LAB_TWINS, compare_twins, parse_twins
from harness.results import Recorder, load_run

# kernel host (A)
K_C2 = Cell("KVM", "l1", "any", "vm21", "parent", 30001, None)
K_SIB = Cell("KVM", "vm22", "any", "vm21", "server", 30002, None)
K_SIB_SEQ = Cell("KVM", "vm22", "any", "vm21", "server", 30003, None, socket="seqpacket")
K_C1 = Cell("KVM", "vm21", "any", "l1", "server", 30004, None)
K_UNMIRRORED = Cell("KVM", "l1", "local", "l1", "loopback", 30005, None)
# hybrid host (B): same tokens, mirrored nodes
H_C2 = Cell("HY", "l1-hybrid", "any", "vm31", "parent", 31001, None)
H_SIB = Cell("HY", "vm32", "any", "vm31", "server", 31002, None)
H_SIB_SEQ = Cell("HY", "vm32", "any", "vm31", "server", 31003, None, socket="seqpacket")
H_C1 = Cell("HY", "vm31", "any", "l1-hybrid", "server", 31004, None)
H_OTHER_GROUP = Cell("HY", "vm32", "any", "vm31", "39", 31005, None)  # no kernel twin


def _run(tmp_path, run_id, observations):
    rec = Recorder(tmp_path, {"run_id": run_id})
    for cell, obs in observations:
        rec.record(cell, obs)
    return load_run(rec.finish())


def _x(name, number, ms):
    return Observation(Outcome.X, errno_name=name, errno=number, elapsed_ms=ms)


@pytest.fixture
def runs(tmp_path):
    a = _run(tmp_path, "20261130T100000Z-00000a", [
        (K_C2, Observation(Outcome.O, elapsed_ms=230.0)),
        (K_SIB, _x("ETIMEDOUT", 110, 2100.0)),
        (K_SIB_SEQ, _x("ETIMEDOUT", 110, 2050.0)),
        (K_C1, Observation(Outcome.O, elapsed_ms=537.0)),
        (K_UNMIRRORED, Observation(Outcome.O, elapsed_ms=3.0))])
    b = _run(tmp_path, "20261130T110000Z-00000b", [
        (H_C2, Observation(Outcome.O, elapsed_ms=310.0)),  # same outcome: not a difference
        (H_SIB, Observation(Outcome.O, elapsed_ms=800.0)),  # sibling routing: O where the kernel host drops
        (H_SIB_SEQ, _x("ESOCKTNOSUPPORT", 94, 12.0)),  # errno differs, outcome the same
        (H_C1, _x("ECONNRESET", 104, 40.0)),
        (H_OTHER_GROUP, _x("ETIMEDOUT", 110, 2000.0))])
    return a, b


def test_each_hybrid_cell_is_paired_with_its_kernel_twin(runs):
    a, b = runs
    diff = compare_twins(a, b, LAB_TWINS)
    by_b = {p.b.id: p for p in diff.pairs}
    assert by_b[H_SIB.id].a.id == K_SIB.id and by_b[H_SIB.id].change == "X->O"
    assert by_b[H_SIB_SEQ.id].a.id == K_SIB_SEQ.id  # the socket type is part of the twin, never crossed
    assert by_b[H_SIB_SEQ.id].change == "errno ETIMEDOUT (110)->ESOCKTNOSUPPORT (94)"
    assert by_b[H_C1.id].change == "O->X"
    assert by_b[H_C2.id].a.id == K_C2.id and not by_b[H_C2.id].differs
    assert by_b[H_OTHER_GROUP.id].a is None  # nothing on the kernel side measured CID 39
    assert K_UNMIRRORED.id not in " ".join(p.id for p in diff.pairs)  # A is the reference: unmirrored cells stay out
    assert diff.pairs[:len(diff.differing)] == diff.differing


def test_without_the_node_map_nothing_pairs(runs):
    a, b = runs
    assert all(p.a is None for p in compare_twins(a, b, {}).pairs)


def test_cli_lists_each_differing_twin_with_both_errnos(runs, tmp_path, capsys):
    a, b = runs
    md = tmp_path / "twins.md"
    rc = main(["diff", str(a.path), str(b.path), "--twins", "lab", "--md", str(md)])
    out = capsys.readouterr().out
    assert rc == 0  # two host models compared: findings, not flips
    assert "4 of 5 cells of B have a twin in A; 3 differ" in out
    line = next(l for l in out.splitlines() if H_SIB_SEQ.id in l)
    assert K_SIB_SEQ.id in line and "ETIMEDOUT (110)" in line and "ESOCKTNOSUPPORT (94)" in line
    line = next(l for l in out.splitlines() if H_C1.id in l)
    assert f"{K_C1.id}: O" in line and "ECONNRESET (104)" in line
    assert f"+ {H_OTHER_GROUP.id}" in out.split("No twin in")[1]
    assert f"`{K_SIB.id} ~ {H_SIB.id}`" in md.read_text()


@pytest.mark.parametrize("bad", ["vm31", "vm31=", "=vm21", "vm31=vm21,vm31=vm22"])
def test_a_bad_node_map_is_one_line(runs, capsys, bad):
    a, b = runs
    assert main(["diff", str(a.path), str(b.path), "--twins", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hvsock-matrix diff: --twins") and "\n" not in err


def test_explicit_map():
    assert parse_twins("h=k, vm9=vm8") == {"h": "k", "vm9": "vm8"}
