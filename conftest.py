"""Loads the hvsock-matrix pytest plugin when running from a checkout that is not pip-installed.

When the package is installed, its `pytest11` entry point loads the plugin instead; loading it
twice would make pytest refuse, hence the check.
"""
import importlib.metadata
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if not any(ep.name == "hvsock_matrix" for ep in importlib.metadata.entry_points(group="pytest11")):
    pytest_plugins = ["harness.plugin"]
