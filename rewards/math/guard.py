"""Cheap checks in the parent that refuse answers no honest solution writes, before any sympy.

Each guard is a linear scan; an answer it refuses is judged wrong without a worker round-trip,
so most adversarial inputs (power towers, giant factorials, deep nesting, megabyte answers)
never reach sympy at all. The worker's time and memory limits remain the backstop.
"""
from __future__ import annotations

import math
import re

MAX_ANSWER_CHARS = 2000
MAX_NESTING = 60
MAX_FACTORIAL = 5000  # 2006! (MATH-style golds) is fine; 10**6! would take seconds and memory
MAX_POWER_DIGITS = 20_000  # decimal digits of a numeric power a^b

_NUM = r"(?:\d+(?:\.\d+)?)"
_EXP = r"(?:\^|\*\*)\s*\{?\s*\(?\s*"
# number ^ number ^ ...: a numeric tower, evaluated right to left, explodes.
_TOWER = re.compile(_NUM + r"\s*\}?\s*" + _EXP + _NUM + r"\s*\)?\s*\}?\s*" + _EXP + r"[\d({]")
_POWER = re.compile(r"(\d+(?:\.\d+)?)\s*\)?\s*\}?\s*(?:\^|\*\*)\s*\{?\s*\(?\s*(\d+)")
# Any literal exponent of six or more digits (x^{123456}): expanding it stalls sympy.
_BIG_EXPONENT = re.compile(r"(?:\^|\*\*)\s*\{?\s*\(?\s*\d{6,}")
_FACTORIAL = re.compile(r"(\d+)\s*\}?\s*\)?\s*!|\\(?:factorial|Gamma)\s*[({]\s*(\d+)")


def _nesting(text: str) -> int:
    depth = deepest = 0
    for c in text:
        if c in "({[":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif c in ")}]" and depth > 0:
            depth -= 1
    return deepest


def refuse_reason(answer: str, max_chars: int = MAX_ANSWER_CHARS) -> str | None:
    """Why ``answer`` is refused without parsing (``"too long"``, ``"power tower"``, …), or
    None when it may be parsed."""
    if len(answer) > max_chars:
        return "too long"
    if _nesting(answer) > MAX_NESTING:
        return "nesting too deep"
    if answer.count("\\sqrt") + answer.count("\\frac") + answer.count("^") > 200:
        return "too many operators"
    # The guard patterns chain optional ``\s*`` groups, which backtrack cubically on a long
    # whitespace run ("2^" + 2000 spaces); with every run collapsed to one space each ``\s*``
    # matches at most one character, and no verdict depends on how much whitespace there is.
    answer = " ".join(answer.split())
    if _TOWER.search(answer):
        return "power tower"
    for m in _POWER.finditer(answer):
        base, exp = float(m.group(1)), m.group(2)
        if len(exp) > 9:
            return "huge power"
        if base > 1 and int(exp) * math.log10(base) > MAX_POWER_DIGITS:
            return "huge power"
    if _BIG_EXPONENT.search(answer):
        return "huge power"
    for m in _FACTORIAL.finditer(answer):
        digits = m.group(1) or m.group(2)
        if len(digits) > 6 or int(digits) > MAX_FACTORIAL:
            return "huge factorial"
    return None
