"""The house stands the right way up: an AST walk over every source file's imports.

cli → runner (with the composition root, runner/build.py) → leaves envs/, algos/, rewards/
side by side → plugins/ and config/ at the bottom. Imports inside functions count too: a
deferred import is still an arrow.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("api", "cli", "runner", "envs", "algos", "rewards", "plugins", "config")


def _imported_parts(path: Path) -> set[str]:
    """Top-level rftgym parts that ``path`` imports (relative or absolute, anywhere in the file)."""
    package = path.relative_to(ROOT).parts[:-1]  # e.g. ("rewards",) for rewards/pipeline.py
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - (node.level - 1)]) if node.level - 1 <= len(package) else []
                target = base + (node.module.split(".") if node.module else [])
                names = [target] if node.module else [base + [a.name] for a in node.names]
            elif node.module and node.module.split(".")[0] == "rftgym":
                names = [node.module.split(".")[1:]]
            else:
                continue
            for name in names:
                if name and name[0] in PARTS:
                    found.add(name[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "rftgym" and len(parts) > 1 and parts[1] in PARTS:
                    found.add(parts[1])
    return found


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


FORBIDDEN = {
    "envs": {"api", "cli", "runner", "algos"},
    "algos": {"api", "cli", "runner", "rewards"},
    "rewards": {"api", "cli", "runner", "algos"},
    "config": {"api", "cli", "runner", "envs", "algos", "rewards", "plugins"},
    "plugins": {"api", "cli", "runner"},
}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_arrow_runs_back_up(folder):
    bad = {str(p.relative_to(ROOT)): sorted(_imported_parts(p) & FORBIDDEN[folder]) for p in _files(folder)}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"{folder}/ must not import {sorted(FORBIDDEN[folder])}; found {bad}"


def test_the_walk_sees_relative_absolute_and_deferred_imports(tmp_path):
    global ROOT
    leaf = tmp_path / "rewards" / "x.py"
    leaf.parent.mkdir()
    leaf.write_text("from ..runner import build\nimport rftgym.api\n"
                    "def f():\n    from ..algos.core import masked_mean\n    from . import base\n")
    saved, ROOT = ROOT, tmp_path
    try:
        assert _imported_parts(leaf) == {"runner", "api", "algos", "rewards"}
    finally:
        ROOT = saved


def test_the_bottom_layer_modules_import_no_part():
    for name in ("errors.py", "devices.py", "answers.py"):
        assert not _imported_parts(ROOT / name), name
