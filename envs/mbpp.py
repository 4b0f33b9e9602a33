"""MBPP-style data for the ``code`` reward: ``text``/``code``/``test_list`` rows -> env rows.

MBPP (and its sanitized variant, ``prompt`` instead of ``text``) ships jsonl rows with the task
description, a gold solution and assert lines. :func:`mbpp_rows` maps them to the columns
``rftgym/PromptDataset-v0`` and the ``code`` reward read: ``prompt`` (the description and the
tests, as in the MBPP paper's prompt), ``tests`` (``test_setup_code`` + the asserts),
``entry_point`` (the function the tests call) and ``solution`` (the gold code, never shown)::

    env = gym.make("rftgym/PromptDataset-v0", dataset=mbpp_rows("mbpp.jsonl"),
                   answer_column=None, reward="code", check="code")
"""
from __future__ import annotations

import ast
import json
import os
import re
from typing import Any, Iterable

from ..errors import ConfigError
from .loading import DataError

PROMPT = "{text}\nYour code should pass these tests:\n{tests}\nAnswer with the function in a ```python block.\n"
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _entry_point(code: str, tests: list[str]) -> str | None:
    """The gold code's function that the tests call (the first one, else its first def)."""
    try:  # parsing the dataset's own gold code; nothing is executed
        names = [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
    except (SyntaxError, ValueError, RecursionError):
        names = []
    called = [m.group(1) for t in tests for m in _CALL.finditer(t)]
    return next((c for c in called if c in names), names[0] if names else None)


def mbpp_row(raw: dict[str, Any], template: str = PROMPT) -> dict[str, Any]:
    """One MBPP row mapped to ``prompt``/``tests``/``entry_point``/``solution`` (+ ``task_id``)."""
    text = raw.get("text", raw.get("prompt"))
    tests = raw.get("test_list")
    if not isinstance(text, str) or not isinstance(tests, list):
        raise DataError(f"an MBPP row needs 'text' (or 'prompt') and 'test_list' columns; got {', '.join(sorted(raw))}")
    code = raw.get("code") or ""
    setup = raw.get("test_setup_code") or ""
    return {"prompt": template.format(text=text.strip(), tests="\n".join(tests)),
            "tests": (setup + "\n" if setup.strip() else "") + "\n".join(tests),
            "entry_point": _entry_point(code, tests), "solution": code, "task_id": raw.get("task_id")}


def mbpp_rows(data: str | os.PathLike | Iterable[dict[str, Any]], template: str = PROMPT) -> list[dict[str, Any]]:
    """Rows of a local MBPP-style jsonl file (or an iterable of dicts) mapped by :func:`mbpp_row`."""
    if "{text}" not in template or "{tests}" not in template:
        raise ConfigError("mbpp template must contain {text} and {tests}")
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if not os.path.isfile(path):
            raise DataError(f"MBPP file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                data = [json.loads(line) for line in f if line.strip()]
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: not JSON lines ({exc})") from None
    rows = [mbpp_row(raw, template) for raw in data]
    if not rows:
        raise DataError("no MBPP rows")
    return rows
