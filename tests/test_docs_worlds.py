"""The code and reasoning-gym examples in docs/environments.md and docs/rewards.md run as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import rftgym

DOCS = Path(rftgym.__file__).resolve().parent / "docs"
EXAMPLE = re.compile(r"^```python\n# example: ([\w-]+)\n(.*?)^```$", re.S | re.M)


def examples() -> dict[str, str]:
    found: dict[str, str] = {}
    for page in ("environments.md", "rewards.md"):
        for name, code in EXAMPLE.findall((DOCS / page).read_text(encoding="utf-8")):
            found[name] = code
    return found


def test_the_examples_are_found():
    assert {"python-tests", "mbpp", "reasoning-gym", "code-reward", "curriculum", "reward-model-rank"} <= set(examples())


@pytest.mark.parametrize("name", ["python-tests", "mbpp", "reasoning-gym", "code-reward", "curriculum",
                                  pytest.param("reward-model-rank", marks=pytest.mark.slow)])
def test_doc_example_runs(name, capsys):
    if name == "reasoning-gym":
        pytest.importorskip("reasoning_gym")
    namespace: dict = {"__name__": "__doc_example__"}
    exec(compile(examples()[name], f"docs example {name}", "exec"), namespace)  # our own docs, in the test process
    if name == "code-reward":
        assert capsys.readouterr().out.strip() == "[1.0, 0.0, 0.0]"
