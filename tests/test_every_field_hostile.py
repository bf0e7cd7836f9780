"""Every key of every model, and one unknown key at every level, with every kind of wrong value:
the answer is "ok" or one InputError line naming file:line -- never a pydantic traceback, a
TypeError from a validator, or a message that repeats a whole list from the file.

Systematic where tests/test_input_properties.py samples: the keys come from the models
themselves (harness.model_errors.keys_of), so a field added tomorrow is covered by this test.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import model_errors
from harness.commands.validate import check_file
from harness.errors import InputError
from harness.inventory import AccessModel, InventoryModel, NodeModel
from harness.scenario.model import AxesModel, CellModel, ClientSide, ScenarioModel, ServerSide

HOSTILE: list[Any] = [None, True, 0, -1, 2**70, 1.5, float("inf"), "", "x", "9" * 3000, [], [1, "a"],
                      list(range(500)), {}, {"a": 1}, {"kind": "command", "server": "{x}"}]

SCENARIO = {"scenario": "Z", "port": 19000,
            "axes": {"server.on": ["host"], "server.bind": ["wildcard"], "client.on": ["vm"],
                     "client.target": ["parent"]},
            "cells": [{"label": "Z1", "server": {"on": "host", "bind": "wildcard"},
                       "client": {"on": "vm", "target": "parent"}, "expect": "O"}]}
INVENTORY = {"inventory": "lab", "nodes": [
    {"name": "h", "role": "host", "os": "linux", "family": "vsock",
     "access": {"kind": "ssh", "host": "h.invalid", "user": "u"}},
    {"name": "v", "role": "vm", "os": "linux", "family": "vsock", "parent": "h", "cid": 3,
     "access": {"kind": "ssh", "host": "v.invalid", "user": "u", "jump": "h"}}]}

# (document, path to a mapping in it, the model that mapping is)
PLACES = [
    (SCENARIO, (), ScenarioModel), (SCENARIO, ("cells", 0), CellModel), (SCENARIO, ("cells", 0, "server"), ServerSide),
    (SCENARIO, ("cells", 0, "client"), ClientSide), (SCENARIO, ("axes",), AxesModel),
    (INVENTORY, (), InventoryModel), (INVENTORY, ("nodes", 1), NodeModel), (INVENTORY, ("nodes", 1, "access"), AccessModel),
]


def cases() -> list[tuple[str, dict[str, Any], tuple[Any, ...], str, Any]]:
    out = []
    for doc, where, model in PLACES:
        for key in [*model_errors.keys_of(model), "server.port", "zz_unknown"]:
            for i, value in enumerate(HOSTILE):
                out.append((f"{model.__name__}.{key}#{i}", doc, where, key, value))
    return out


CASES = cases()


def at(doc: dict[str, Any], where: tuple[Any, ...]) -> dict[str, Any]:
    for part in where:
        doc = doc[part]
    return doc


def test_the_base_documents_are_valid(tmp_path):
    for name, doc in (("s.yaml", SCENARIO), ("i.yaml", INVENTORY)):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc))
        assert check_file(str(path)).startswith("ok ")


@pytest.mark.parametrize("name, doc, where, key, value", CASES, ids=[c[0] for c in CASES])
def test_every_key_with_every_wrong_value_is_ok_or_one_line(tmp_path: Path, name, doc, where, key, value):
    mutated = copy.deepcopy(doc)
    at(mutated, where)[key] = value
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(mutated, width=10**6))
    try:
        check_file(str(path))
    except InputError as err:
        message = str(err)
        assert message.startswith(f"{path}:") and "\n" not in message and len(message) <= 600, message
        assert "validation error" not in message and "pydantic" not in message, message
