"""Results files: round trip, atomic writes, xdist part merge, history lookup, baseline flips."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.cell import Cell, Driver
from harness.errors import InputError
from harness.judgement import baseline_for_worker, flip_between, judge
from harness.outcome import Observation, Outcome
from harness.results import CellResult, Recorder, list_history, load_history, load_run, resolve_run, write_json_atomic


def cell(label: str, server: str, bind: str, client: str, target: str, expected: Outcome | None,
         **kw) -> Cell:
    return Cell("A", server, bind, client, target, 19000, expected, label=label, **kw)


A1 = cell("A1", "hv-host", "wildcard", "win-vm", "parent", Outcome.O, source="001 case 1")
A7 = cell("A7", "win-vm", "loopback", "hv-host", "server", Outcome.X, disputed=True, note="see A3")
U1 = cell(None, "win-vm", "children", "hv-host", "broadcast", None)

ECHO = Observation(Outcome.O, elapsed_ms=1.5, reply="Hello: World!",
                   commands=["probe listen hyperv 00000000-0000-0000-0000-000000000000"],
                   server_address="vmid=wildcard service=00004a38-facb-11e6-bd58-64006a7986d3",
                   started_at="2026-01-01T00:00:00Z", duration_ms=40.0, extra={"peer": "x"})
REFUSED = Observation(Outcome.X, errno_name="ECONNREFUSED", errno=111, elapsed_ms=3.0,
                      commands=["probe connect"])
BIND = Observation(Outcome.B, bind_errno_name="EADDRNOTAVAIL", bind_errno=99)


def run_once(results_dir: Path, observations: dict[Cell, Observation], **meta) -> Path:
    recorder = Recorder(results_dir, meta)
    for c, obs in observations.items():
        recorder.record(c, obs)
    return recorder.finish()


def test_round_trip_keeps_every_field(tmp_path):
    recorder = Recorder(tmp_path, {"pytest_args": ["scenarios/"], "inventory": {"name": "lab", "path": "inv.yaml"}})
    recorder.set_node_facts("hv-host", {"os": "windows", "windows_build": "26100"})
    recorder.record(A1, ECHO)
    recorder.record(A7, REFUSED)
    recorder.record(U1, BIND)
    path = recorder.finish()

    run = load_run(path)
    assert run.run_id == recorder.run_id
    assert [c.id for c in run.cells] == [A1.id, A7.id, U1.id]
    first = run.cell(A1.id)
    assert first.observation == ECHO
    assert first.expected is Outcome.O and first.label == "A1" and first.source == "001 case 1"
    assert (first.scenario, first.server_on, first.bind, first.client_on, first.target, first.port) == \
        ("A", "hv-host", "wildcard", "win-vm", "parent", 19000)
    assert run.cell(A7.id).disputed is True and run.cell(A7.id).note == "see A3"
    assert run.cell(U1.id).expected is None and run.cell(U1.id).observation == BIND
    assert run.meta["node_facts"] == {"hv-host": {"os": "windows", "windows_build": "26100"}}
    assert run.meta["inventory"] == {"name": "lab", "path": "inv.yaml"}
    assert run.meta["pytest_args"] == ["scenarios/"]
    assert run.meta["started"] <= run.meta["finished"]
    assert {k: run.meta["counts"][k] for k in ("O", "X", "B", "E", "mismatch")} == \
        {"O": 1, "X": 1, "B": 1, "E": 0, "mismatch": 0}
    # the history copy and the latest pointer
    assert load_run(tmp_path / "history" / f"{run.run_id}.json").to_dict() == run.to_dict()
    assert (tmp_path / "latest" / "results.json").resolve() == path.resolve()


def test_cell_result_dict_round_trip_with_driver_and_baseline():
    c = cell("C3", "guest", "wildcard", "host", "server", Outcome.O, driver=Driver("socat"))
    result = CellResult.from_cell(c, REFUSED, baseline=ECHO)
    assert result.flip == "O->X" and result.id.endswith("+socat]")
    back = CellResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"run_id": "old", "cells": []})
    before = target.read_bytes()
    with pytest.raises(TypeError):
        # fails half way: the first key is serialised, the set is not
        write_json_atomic(target, {"run_id": "new", "cells": [{"bad": {1, 2}}]})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_cells_added_from_workers_build_one_run_in_collection_order(tmp_path):
    """The controller's recorder gets CellResults as they travel in pytest reports (plain dicts),
    each judged where it ran against the baseline the controller handed that worker."""
    baseline = run_once(tmp_path, {A1: ECHO}, run_id="20260101T000000Z-000001")
    controller = Recorder(tmp_path, {"run_id": "20260102T000000Z-abcdef", "baseline_path": str(baseline)})
    workerinput = json.loads(json.dumps(controller.baseline_for_workers()))
    assert workerinput == {A1.id: {"outcome": "O", "errno_name": None, "errno": None,
                                   "bind_errno_name": None, "bind_errno": None}}

    def on_worker(c: Cell, o: Observation, seq: int) -> CellResult:
        base = Observation.from_dict(workerinput[c.id]) if c.id in workerinput else None
        result = CellResult.from_cell(c, o, seq=seq, judgement=judge(c, o, base))
        return CellResult.from_dict(json.loads(json.dumps(result.to_dict())))

    travelled = [on_worker(c, o, i) for c, o, i in ((A7, REFUSED, 1), (A1, REFUSED, 0))]
    controller.add(travelled[0], worker="gw1")
    controller.add(travelled[1], worker="gw0")
    controller.update_meta(inventory={"name": "lab", "path": "inventory/lab.yaml"})
    controller.update_meta(inventory={"name": "other", "path": "ignored.yaml"})  # the first one wins
    controller.set_node_facts("hv-host", {"windows_build": "26100"})
    run = load_run(controller.finish())
    assert [c.id for c in run.cells] == [A1.id, A7.id]
    assert run.cell(A1.id).flip == "O->X" and run.cell(A1.id).baseline == ECHO  # full baseline kept
    assert run.cell(A1.id).judgement.kind == "fail" and run.cell(A7.id).judgement.kind == "pass"
    assert run.meta["workers"] == ["gw0", "gw1"]
    assert run.meta["inventory"]["path"] == "inventory/lab.yaml"
    assert run.meta["node_facts"] == {"hv-host": {"windows_build": "26100"}}
    assert sorted(p.name for p in (tmp_path / "runs" / run.run_id).iterdir()) == ["results.json"]


def test_rerun_of_a_cell_keeps_the_last_observation(tmp_path):
    recorder = Recorder(tmp_path, {})
    recorder.record(A1, REFUSED)
    recorder.record(A1, ECHO)
    run = load_run(recorder.finish())
    assert len(run.cells) == 1 and run.cells[0].observation == ECHO


def test_nothing_recorded_means_nothing_to_write(tmp_path):
    assert not Recorder(tmp_path, {}).has_results()
    assert list(tmp_path.iterdir()) == []


def test_baseline_last_and_flips(tmp_path):
    first = run_once(tmp_path, {A1: ECHO, A7: REFUSED}, run_id="20260101T000000Z-000001")
    second = run_once(tmp_path, {A1: ECHO, A7: REFUSED}, run_id="20260102T000000Z-000002")
    assert resolve_run("last", tmp_path) == tmp_path / "history" / "20260102T000000Z-000002.json"
    assert resolve_run("previous", tmp_path) == tmp_path / "history" / "20260101T000000Z-000001.json"
    assert resolve_run("20260101T000000Z-000001", tmp_path).stem == "20260101T000000Z-000001"
    assert resolve_run(str(second.parent), tmp_path) == second
    assert resolve_run(str(first), tmp_path) == first

    recorder = Recorder(tmp_path, {"baseline_path": str(resolve_run("last", tmp_path))})
    assert recorder.baseline_observation(A1.id) == ECHO
    assert recorder.baseline_observation(U1.id) is None

    def flip_of(c: Cell, observation: Observation) -> str | None:
        return judge(c, observation, recorder.baseline_observation(c.id)).flip

    assert flip_of(A1, REFUSED) == "O->X"
    assert flip_of(A7, ECHO) == "X->O"
    assert flip_of(A7, Observation(Outcome.E, detail="ssh died")) == "X->E"
    # issue 14: a new errno for the same outcome is a flip (no listener -> dropped is a regression)
    assert flip_of(A7, Observation(Outcome.X, errno_name="ETIMEDOUT")) == "X ECONNREFUSED->X ETIMEDOUT"
    assert flip_of(A7, Observation(Outcome.X, errno_name="ECONNREFUSED", elapsed_ms=9e3)) is None
    assert flip_of(A7, Observation(Outcome.X)) is None  # no errno measured: nothing to compare
    assert flip_of(U1, ECHO) is None  # new cell: nothing to flip from
    # a worker judges from the fields it is sent exactly as the controller from the whole observation
    for c in (A1, A7):
        sent = Observation.from_dict(json.loads(json.dumps(baseline_for_worker(recorder.baseline_observation(c.id)))))
        for obs in (ECHO, REFUSED, BIND, Observation(Outcome.X, errno_name="ETIMEDOUT")):
            assert judge(c, obs, sent) == judge(c, obs, recorder.baseline_observation(c.id))
    recorder.record(A1, REFUSED)
    run = load_run(recorder.finish())
    assert run.meta["baseline"]["run_id"] == "20260102T000000Z-000002"
    assert [c.id for c in run.flips] == [A1.id]
    assert run.cell(A1.id).baseline == ECHO
    assert [r.run_id for r in load_history(tmp_path, before=run.run_id, limit=1)] == ["20260102T000000Z-000002"]
    assert len(list_history(tmp_path)) == 3


def test_flip_between():
    assert flip_between(None, ECHO) is None
    assert flip_between(ECHO, ECHO) is None
    assert flip_between(BIND, Observation(Outcome.NA)) == "B->n/a"


@pytest.mark.parametrize("content, where", [
    ('{"run_id": "x", "cells": [\n  {"id": 1,,}]}', ":2"),
    ("[]", ""),
    ('{"run_id": "x", "cells": [{"id": "a", "observation": {"outcome": "Q"}}]}', ""),
])
def test_broken_results_file_is_one_clear_line(tmp_path, content, where):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        load_run(path)
    message = str(err.value)
    assert message.startswith(f"{path}{where}") and "\n" not in message


def test_unknown_run_reference(tmp_path):
    with pytest.raises(InputError, match="no such results file or run id"):
        resolve_run("20990101T000000Z-nothing", tmp_path)
    with pytest.raises(InputError, match="only 0 run"):
        resolve_run("last", tmp_path)


def test_latest_pointer_moves_to_the_newest_run(tmp_path):
    run_once(tmp_path, {A1: ECHO}, run_id="20260101T000000Z-000001")
    run_once(tmp_path, {A1: REFUSED}, run_id="20260102T000000Z-000002")
    latest = tmp_path / "latest"
    assert latest.is_symlink() and os.readlink(latest) == os.path.join("runs", "20260102T000000Z-000002")
    assert load_run(latest / "results.json").cells[0].observation == REFUSED


def test_result_files_are_ordinary_readable_files(tmp_path):
    path = run_once(tmp_path, {A1: ECHO})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_ids_from_older_results_files_read_in_todays_form(tmp_path):
    from harness.cell import current_id

    assert current_id("A1[hv-host:wildcard<-win-vm:parent]") == "A1[hv-host:wildcard-from-win-vm:parent]"
    assert current_id("C2[k:wildcard<-g:parent@socat]") == "C2[k:wildcard-from-g:parent+socat]"
    assert current_id(A1.id) == A1.id
    old = CellResult.from_cell(A1, ECHO).to_dict() | {"id": "A1[hv-host:wildcard<-win-vm:parent]"}
    write_json_atomic(tmp_path / "old.json", {"run_id": "20250101T000000Z-000000", "cells": [old]})
    recorder = Recorder(tmp_path, {"baseline_path": str(tmp_path / "old.json")})
    assert judge(A1, REFUSED, recorder.baseline_observation(A1.id)).flip == "O->X"  # last year's run is still a baseline
