"""Writes this folder's hostile results files and EXPECT (file<TAB>fragment of load_run's one line).

Run from this folder: python3 make_corpus.py. The files are kept in git so a reader of the corpus
sees exactly the bytes; this script says how each was made.
"""
import json

RID = "20261130T101500Z-1a2b3c"
GOOD_CELL = {"id": "A1[h:wildcard-from-v:parent]", "scenario": "A", "label": "A1", "server_on": "h",
             "bind": "wildcard", "client_on": "v", "target": "parent", "port": 19000, "driver": "probe",
             "expected": "O", "observation": {"outcome": "O", "elapsed_ms": 1.0}}


def run(cells=None, **kw):
    d = {"schema": 1, "run_id": RID, "meta": {}, "cells": cells if cells is not None else [GOOD_CELL]}
    d.update(kw)
    return json.dumps(d)


def cell(**kw):
    return dict(GOOD_CELL, **kw)


def obs(**kw):
    return cell(observation=dict(GOOD_CELL["observation"], **kw))


CASES = {
    "not-json.json": ("not valid JSON", "{run_id: 1}"),
    "truncated.json": ("not valid JSON", run()[:-10]),
    "empty.json": ("not valid JSON", ""),
    "list-top.json": ("not an hvsock-matrix results file", "[]"),
    "no-cells.json": ("not an hvsock-matrix results file", json.dumps({"run_id": RID})),
    "cells-mapping.json": ("not an hvsock-matrix results file", run(cells={"a": 1})),
    "run-id-path.json": ("not a run id", run(run_id="../../../tmp/x")),
    "run-id-number.json": ("not a run id", run(run_id=20261130)),
    "meta-list.json": ("meta is not a mapping", run(meta=[1])),
    "cell-string.json": ("cell 1: not a mapping", run(cells=["A1"])),
    "no-observation.json": ("observation: not a mapping",
                            run(cells=[{k: v for k, v in GOOD_CELL.items() if k != "observation"}])),
    "observation-list.json": ("observation: not a mapping", run(cells=[cell(observation=[])])),
    "unknown-outcome.json": ("unknown outcome", run(cells=[obs(outcome="Q")])),
    "outcome-number.json": ("outcome is int", run(cells=[obs(outcome=1)])),
    "elapsed-text.json": ("elapsed_ms is str", run(cells=[obs(elapsed_ms="fast")])),
    "errno-float.json": ("errno is float", run(cells=[obs(outcome="X", errno=1.5)])),
    "commands-numbers.json": ("commands must be text", run(cells=[obs(commands=[1, 2])])),
    "extra-list.json": ("extra is list", run(cells=[obs(extra=[1])])),
    "baseline-text.json": ("baseline: not a mapping", run(cells=[cell(baseline="O")])),
    "id-number.json": ("malformed cell", run(cells=[cell(id=7)])),
    "port-text.json": ("malformed cell", run(cells=[cell(port="19000")])),
    "label-list.json": ("malformed cell", run(cells=[cell(label=["A1"])])),
    "verdict-unknown.json": ("unknown verdict", run(cells=[cell(verdict="maybe")])),
    "expected-unknown.json": ("malformed cell", run(cells=[cell(expected="Y")])),
    "nan.json": ("NaN is not a number", run(cells=[obs(elapsed_ms=float("nan"))])),
    "infinity.json": ("Infinity is not a number", run(cells=[obs(elapsed_ms=float("inf"))])),
    "huge-int.json": ("longer than 40 digits", run(cells=[obs(outcome="X", errno=10**100)])),
    "deep.json": ("nested more than 32 deep", '{"run_id": "%s", "cells": [%s%s]}' % (RID, "[" * 5000, "]" * 5000)),
    "unbalanced.json": ("nested more than 32 deep", "{" * 100),
    "utf16.json": ("UTF-16", run().encode("utf-16")),
    "utf16-no-bom.json": ("UTF-16", run().encode("utf-16-le")),
    "latin1.json": ("not UTF-8", json.dumps({"run_id": RID, "cells": [cell(note="café")]},
                                            ensure_ascii=False).encode("latin-1")),
}

if __name__ == "__main__":
    lines = []
    for name, (fragment, content) in CASES.items():
        with open(name, "wb") as out:
            out.write(content if isinstance(content, bytes) else content.encode())
        lines.append(f"{name}\t{fragment}")
    with open("EXPECT", "w") as out:
        out.write("# file<TAB>a fragment of the one line load_run answers (tests/test_results_reader.py)\n")
        out.write("\n".join(lines) + "\n")
