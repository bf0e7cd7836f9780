"""Command-line inputs are input too: every path and number a user types gets one line, and an
output path never replaces something that is not a regular file (run as root, os.replace would
swap a device node such as /dev/full for a file). Missing folders are made, as pytest's
--junitxml makes them.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from harness import cli
from harness.cell import Cell
from harness.errors import OutputError
from harness.outcome import Observation, Outcome
from harness.results import Recorder, write_text_atomic


@pytest.fixture
def results(tmp_path: Path) -> Path:
    recorder = Recorder(tmp_path / "reports", {})
    recorder.record(Cell("A", "h", "wildcard", "v", "parent", 19000, Outcome.O, label="A1"),
                    Observation(Outcome.O, elapsed_ms=1.0))
    return recorder.finish()


def not_regular(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.close()
    folder = tmp_path / "folder"
    folder.mkdir()
    return {"fifo": fifo, "socket": sock_path, "folder": folder}


def one_line(capsys: pytest.CaptureFixture[str], rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", ["report", "diff"])
@pytest.mark.parametrize("flag", ["--html", "--md"])
def test_output_that_is_not_a_regular_file_is_refused_and_left_alone(tmp_path, results, capsys, command, flag):
    for kind, target in not_regular(tmp_path).items():
        before = target.lstat()
        args = [command, str(results)] + ([str(results)] if command == "diff" else []) + [flag, str(target)]
        line = one_line(capsys, cli.main(args))
        assert line.startswith(f"hvsock-matrix: cannot write {target}: "), (kind, line)
        after = target.lstat()
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), kind  # not replaced


@pytest.mark.parametrize("command", ["report", "diff"])
def test_output_below_a_file_is_one_line(tmp_path, results, capsys, command):
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "m.html"  # its "folder" is a file: mkdir fails
    args = [command, str(results)] + ([str(results)] if command == "diff" else []) + ["--html", str(target)]
    assert one_line(capsys, cli.main(args)).startswith(f"hvsock-matrix: cannot write {target}: ")


def test_writer_refuses_non_regular_targets_directly(tmp_path):
    for target in not_regular(tmp_path).values():
        with pytest.raises(OutputError, match="cannot write"):
            write_text_atomic(target, "x")
    assert write_text_atomic(tmp_path / "new" / "f.txt", "ok").read_text() == "ok"  # reports/ folders are made


@pytest.mark.parametrize("port", ["0", "-1", "65536", "abc", "1e3"])
def test_lab_port_out_of_range_never_reaches_the_lab(port, capsys, monkeypatch):
    """`lab up --port 0` used to mean "the default lab" (someone else's): refused by the parser."""
    import harness.lab.lifecycle as lab

    monkeypatch.setattr(lab, "up", lambda **kw: pytest.fail(f"lab up called with {kw}"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["lab", "up", "--port", port])
    assert exit_.value.code == 2
    assert "argument --port" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["afile", "afile/below", "fifo"])
def test_pytest_results_dir_that_cannot_be_written_stops_before_any_cell(tmp_path, where):
    """A nightly run must not find out after its last cell that its results have nowhere to go."""
    from tests.loopback_project import make_project, run_pytest

    project = make_project(tmp_path / "p")
    (project / "afile").write_text("x")
    os.mkfifo(project / "fifo")
    proc = run_pytest(project, "--collect-only", "-q", "--results-dir", where)  # the later flag wins
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"--results-dir {project / where}: " in proc.stderr and "is not a folder" in proc.stderr


@pytest.mark.parametrize("value", ["-5", "1001", "lots"])
def test_report_history_count_is_bounded(results, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", str(results), "--history", value])
    assert exit_.value.code == 2 and "argument --history" in capsys.readouterr().err
