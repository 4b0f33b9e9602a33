"""The labelled checker cases (shared with benchmarks/math_reward.py), through ``verify``."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rftgym.rewards.math import verify

_CASES_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "math_cases.py"
_spec = importlib.util.spec_from_file_location("rftgym_math_cases", _CASES_FILE)
math_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(math_cases)  # type: ignore[union-attr]


@pytest.mark.parametrize("case", math_cases.ALL_CASES,
                         ids=[f"{c.category}-{i}" for i, c in enumerate(math_cases.ALL_CASES)])
def test_case(case) -> None:
    assert verify(case.gold, case.prediction) is case.expected, case


def test_every_category_has_many_cases_and_negative_ones() -> None:
    by_category: dict[str, list[bool]] = {}
    for case in math_cases.ALL_CASES:
        by_category.setdefault(case.category, []).append(case.expected)
    assert len(by_category) >= 10
    for category, verdicts in by_category.items():
        assert len(verdicts) >= 8, category
        assert False in verdicts, category
        assert any(verdicts) or category == "traps", category  # traps are all false positives
