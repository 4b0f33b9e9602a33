"""Shared fixtures: a fresh plugin manager per test, fake installed plugins, a CLI runner.

Each test starts from a new :class:`rftgym.plugins.manager.PluginManager`, with the plugin
environment variables cleared so that whatever happens to be installed on the machine (or
set in the shell) cannot change the result.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from rftgym.plugins.manager import reset_manager

PLUGIN_ENV = ("RFTGYM_LOAD_PLUGINS", "RFTGYM_STRICT_PLUGINS", "RFTGYM_DEBUG")


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Tests never write to the user's cache folder (``runner/gguf_cache.py``)."""
    previous = os.environ.get("RFTGYM_CACHE")
    os.environ["RFTGYM_CACHE"] = str(tmp_path_factory.mktemp("rftgym-cache"))
    yield
    if previous is None:
        os.environ.pop("RFTGYM_CACHE", None)
    else:
        os.environ["RFTGYM_CACHE"] = previous


@pytest.fixture(autouse=True)
def fresh_manager(monkeypatch):
    """Isolate every test: no plugin env vars, a new manager before and after."""
    for var in PLUGIN_ENV:
        monkeypatch.delenv(var, raising=False)
    reset_manager()
    yield
    reset_manager()


@dataclass
class FakeDist:
    """A fake installed distribution in a temporary site directory."""

    site: Path
    dist: str
    entry_point: str
    module: str


@pytest.fixture
def make_dist(tmp_path, monkeypatch):
    """Install a fake distribution exposing an ``rftgym`` entry point; return a :class:`FakeDist`.

    It writes ``<dist>-1.0.dist-info/{METADATA,entry_points.txt}`` plus the module into one
    site directory (prepended to ``sys.path``), which is exactly what ``importlib.metadata``
    reads for a real installed package. Module names are unique per test because
    ``sys.modules`` outlives the test.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(code: str, dist: str = "fakeplugin", entry_point: str = "fake", version: str = "1.0") -> FakeDist:
        module = f"{dist.replace('-', '_')}_mod_{uuid.uuid4().hex[:8]}"
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[rftgym]\n{entry_point} = {module}\n")
        (site / f"{module}.py").write_text(textwrap.dedent(code))
        monkeypatch.delitem(sys.modules, module, raising=False)
        import importlib

        importlib.invalidate_caches()
        return FakeDist(site=site, dist=dist, entry_point=entry_point, module=module)

    return make


GOOD_PLUGIN = """
    import rftgym

    def count_a(prompts, completions, **columns):
        return [float(c.count("a")) for c in completions]

    @rftgym.hookimpl
    def rftgym_register_rewards(register):
        register("count_a", count_a)
"""


@pytest.fixture
def run_cli(tmp_path):
    """Run ``python -m rftgym ARGS`` in a subprocess with a minimal environment.

    Returns the CompletedProcess; ``env`` adds variables, ``pythonpath`` a list of folders.
    """
    def run(*args: str, env: dict[str, str] | None = None, pythonpath: list[Path] = (),
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(tmp_path)),
                "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "RFTGYM_CACHE": os.environ["RFTGYM_CACHE"]}
        # The caller's PYTHONPATH stays first: it decides which rftgym checkout is under test.
        paths = [*filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)), *map(str, pythonpath)]
        if paths:
            base["PYTHONPATH"] = os.pathsep.join(paths)
        base.update(env or {})
        return subprocess.run([sys.executable, "-m", "rftgym", *args], capture_output=True, text=True,
                              env=base, cwd=cwd or tmp_path, timeout=120)

    return run


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("rftgym: error:"), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def one_line_error():
    """``one_line_error(stderr)`` asserts one ``rftgym: error:`` line, no traceback; returns it."""
    return _one_line_error
