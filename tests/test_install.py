"""A plain (non-editable) `pip install .` gives the same import names as the editable install."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"neuroalrnn": "neuroalrnn", "envs": "neuroalrnn.envs", "analyses": "neuroalrnn.analyses"}
IMPORT_SCRIPT = """
import importlib, json, sys
found = {}
for name in json.loads(sys.argv[1]):
    try:
        found[name] = importlib.import_module(name).__file__
    except ImportError as error:
        found[name] = "ImportError: " + str(error)
print(json.dumps(found))
"""


def _source_modules() -> list[str]:
    """Every module of the source tree under the import name it must have once installed."""
    names = []
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            dotted = ".".join((package, *parts))
            names.append(dotted.removesuffix(".__init__"))
    return names


def _import_all(cwd: Path, extra_env: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | extra_env
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT, json.dumps(_source_modules())],
        capture_output=True, text=True, check=True, cwd=cwd, env=env, timeout=300,
    )
    return json.loads(result.stdout)


@pytest.mark.slow
def test_plain_install_has_the_same_imports(tmp_path):
    target = tmp_path / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(ROOT)]
    if importlib.util.find_spec("setuptools") is not None:
        command.insert(4, "--no-build-isolation")  # build with the venv's setuptools
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    assert not (target / "envs").exists() and not (target / "analyses").exists(), "generic top-level package"

    plain = _import_all(tmp_path, {"PYTHONPATH": str(target)})
    editable = _import_all(tmp_path, {})
    assert set(plain) == set(editable) == set(_source_modules())
    for name in plain:
        assert plain[name].startswith(str(target)), (name, plain[name])
        assert editable[name].startswith(str(ROOT)), (name, editable[name])
