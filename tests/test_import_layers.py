"""No module imports upward: harness/ reads bottom-up along the data path (docs/architecture.md).

Layers, lowest first; a module may import its own layer and the ones below, never above. The
data path runs scenario -> cell -> plan -> driver -> agent -> transport -> probe -> observation
-> judgement -> recorder -> report: each stage is called by the one above it, so the caller sits
higher (the runner plans a cell and calls a driver, a driver talks to an agent, an agent to a
transport). Shared vocabulary (outcome, cell, node, addresses, errors, the probe's protocol, the
judgement) is the floor everyone stands on. A module is placed by its longest matching prefix;
a new module inherits its package's layer, a new top-level module must be placed here.
"""
from __future__ import annotations

import pytest

from tests.test_import_cycles import import_graph

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("vocabulary", (
        "harness", "harness.errors", "harness.secrets", "harness.timeouts", "harness.outcome", "harness.node",
        "harness.cell", "harness.addresses", "harness.hybrid_addresses", "harness.yamlfile", "harness.textfile",
        "harness.model_errors",
        "harness.judgement",
        "harness.probe",  # stdlib only, shipped to nodes: imports nothing of ours
        "harness.drivers.errnos",  # the errno vocabulary scenario files and drivers share
        "harness.drivers.command_ready",  # a command template's ready: pattern, checked when a scenario loads
        "harness.command_line",  # argv <-> one command line by each OS's rules: pure text
        # Windows helpers with no I/O of their own, used by transports and registration alike
        "harness.hyperv.powershell", "harness.hyperv.clixml", "harness.hyperv.ownership", "harness.windows",
    )),
    ("files", ("harness.inventory", "harness.scenario", "harness.scenario_files", "harness.markers",
               "harness.results", "harness.matrix")),
    ("transport", ("harness.transports",)),
    ("agent", ("harness.agents",)),
    ("driver", ("harness.drivers", "harness.safety", "harness.runner")),
    ("session", ("harness.session", "harness.scheduler", "harness.in_flight", "harness.hyperv", "harness.doctor",
                 "harness.lab")),
    ("report", ("harness.report",)),
    ("pytest", ("harness.lifecycle", "harness.plugin")),
    ("command line", ("harness.commands", "harness.cli")),
]


def layer_of(module: str) -> int:
    best, found = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    if found is None or (best == len("harness") and module != "harness"):
        raise LookupError(f"{module} has no layer: place it in tests/test_import_layers.py LAYERS")
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for module, deps in sorted(graph.items()):
        mine = layer_of(module)
        for dep in sorted(deps):
            if layer_of(dep) > mine:
                out.append(f"{module} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})")
    return out


def test_every_module_has_a_layer():
    missing = []
    for module in import_graph():
        try:
            layer_of(module)
        except LookupError as err:
            missing.append(str(err))
    assert not missing, missing


def test_no_module_imports_upward():
    found = upward_imports(import_graph())
    assert not found, "\n".join(found)


def test_the_checker_sees_an_upward_import():
    graph = {"harness.outcome": {"harness.report.html"}, "harness.report.html": {"harness.outcome"}}
    assert upward_imports(graph) == ["harness.outcome (vocabulary) imports harness.report.html (report)"]
    assert layer_of("harness.drivers.errnos") < layer_of("harness.scenario.model") < layer_of("harness.drivers.probe")
    with pytest.raises(LookupError):
        layer_of("harness.newthing")
