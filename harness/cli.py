"""`hvsock-matrix` command line: a thin dispatcher over harness/commands/<name>.py.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`; modules are
imported only when their command runs, so `validate` never imports paramiko or qemu code.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from harness import __version__
from harness.errors import HarnessError

COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("harness.commands.validate", "check scenario and inventory files without running anything"),
    "lab": ("harness.commands.lab", "lab-in-a-box: up | status | down"),
    "diff": ("harness.commands.diff", "compare two runs' results"),
    "report": ("harness.commands.report", "render HTML/Markdown from a results file"),
    "register": ("harness.commands.register", "register Hyper-V service GUIDs on hosts"),
    "unregister": ("harness.commands.register_undo", "remove Hyper-V service GUIDs a run registered"),
    "doctor": ("harness.commands.doctor", "per node: what a cell needs and what is wrong"),
    "expect": ("harness.commands.expect", "write a run's measured errnos into scenario expectations"),
    "history": ("harness.commands.history", "each cell run by run: stable, changed since, flaky, infra"),
    "bisect-cmd": ("harness.commands.bisect_cmd", "print a one-cell command for `git bisect run` (exit 0/1/125)"),
    "bisect-step": ("harness.commands.bisect_step", "run one cell; exit 0 good, 1 bad, 125 E or cannot run"),
}


def build_parser(available: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hvsock-matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hvsock-matrix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in available.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (module_name, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module_name) is not None:
            out[name] = (module_name, help_text)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(_available()).parse_args(argv)
        return int(args._module.run(args) or 0)
    except HarnessError as err:
        print(f"hvsock-matrix: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hvsock-matrix: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
