"""The example plugin package installs offline, and rftgym finds its reward and env by itself.

It is installed with pip into a temporary ``--target`` folder (from a copy, so the build's
``build/`` and ``*.egg-info`` never land in the repository), which is then put on
PYTHONPATH: exactly how an installed distribution's entry point is seen.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rftgym

ROOT = Path(rftgym.__file__).resolve().parent
EXAMPLE = ROOT / "examples" / "rftgym-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example package pip-installed into a temporary target folder."""
    work = tmp_path_factory.mktemp("example-plugin")
    source = work / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    # --no-build-isolation: build with the setuptools already here (no download); --no-deps:
    # rftgym, its only dependency, is the host and is already installed.
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(target.glob("rftgym_example_plugin-0.1.0.dist-info/entry_points.txt"))
    return target


def test_installed_plugin_is_listed(installed, run_cli):
    proc = run_cli("plugins", "--json", pythonpath=[installed])
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    example = plugins["example"]
    assert example["status"] == "ok" and example["source"] == "entry-point" and example["version"] == "0.1.0"
    assert example["rewards"] == ["brevity"] and example["envs"] == ["rftgym_example/Parity-v0"]


def test_allow_list_can_switch_it_off(installed, run_cli):
    proc = run_cli("plugins", "--json", pythonpath=[installed], env={"RFTGYM_LOAD_PLUGINS": ""})
    assert proc.returncode == 0, proc.stderr
    assert "example" not in {p["name"] for p in json.loads(proc.stdout)["plugins"]}


def test_train_config_with_the_plugin_validates(installed, run_cli):
    proc = run_cli("train", "--env", "rftgym_example/Parity-v0", "--reward", "brevity", "--dry-run",
                   "--set", "env.kwargs.n_bits=4", pythonpath=[installed])
    assert proc.returncode == 0, proc.stderr
    assert "rftgym_example/Parity-v0" in proc.stdout and "name: brevity" in proc.stdout


def test_the_example_packages_own_tests_pass(installed, tmp_path):
    """Run examples/rftgym-example-plugin/tests against the installed copy (from a copy of the
    tests, so no cache or bytecode is written into the repository)."""
    shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")
    shutil.copy(EXAMPLE / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(installed), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("RFTGYM_LOAD_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout
