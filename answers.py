"""The one place that finds a marked final answer in text: ``\\boxed{…}`` and GSM8K ``####``.

Bottom layer (like ``errors.py``): imports nothing from rftgym, so the envs (gold columns),
the format rewards and the math checker (completions) all read boxes and ``####`` the same
way. Every scan is linear in the text: completions are untrusted and may repeat ``\\boxed{``
thousands of times without closing it.

Conventions, pinned by ``tests/test_answers.py``:

- Nested boxes: the outermost box is the answer (``\\boxed{\\boxed{9}+1}`` -> ``\\boxed{9}+1``);
  a box that only wraps another box is peeled (``\\boxed{\\boxed{9}}`` -> ``9``).
- ``\\fbox{…}`` counts as a box; ``\\boxed 5`` (no braces, valid LaTeX) too; ``\\{``/``\\}``
  are escaped braces, not groups.
- ``####``: the first line of text after the last ``####`` (GSM8K writes ``#### 42`` last).
"""
from __future__ import annotations

import re

ANSWER_FORMATS = ("auto", "gsm8k", "boxed", "raw")
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_BARE_BOX_TOKEN = re.compile(r"[^\s$]+")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def _brace_matches(text: str) -> dict[int, int]:
    """``{index of "{": index of its "}"}`` for every balanced group, in one pass (``\\``
    escapes the next character). Matching each box on its own was quadratic on a text that
    repeats ``\\boxed{`` without closing it."""
    matches: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            matches[stack.pop()] = i
        i += 1
    return matches


def boxed_all(text: str) -> list[tuple[str, int, int]]:
    """Every outermost ``\\boxed{…}`` / ``\\fbox{…}`` (and ``\\boxed 5``) as ``(content, start,
    end)``, in order; a box inside another box is part of the outer one's content."""
    found: list[tuple[str, int, int]] = []
    matches: dict[int, int] | None = None
    for cmd in _BOX_COMMANDS:
        pos = text.find(cmd)
        while pos != -1:
            after = pos + len(cmd)
            if after < len(text) and text[after].isalpha():  # \boxedsymbol is another command
                pos = text.find(cmd, after)
                continue
            j = after
            while j < len(text) and text[j] == " ":
                j += 1
            if j < len(text) and text[j] == "{":
                if matches is None:
                    matches = _brace_matches(text)
                close = matches.get(j)
                if close is not None:
                    found.append((text[j + 1:close], pos, close + 1))
            elif after < j < len(text):  # "\boxed 5": one token after a space
                m = _BARE_BOX_TOKEN.match(text, j, min(len(text), j + 200))
                if m:
                    found.append((m.group(0), pos, m.end()))
            pos = text.find(cmd, after)
    found.sort(key=lambda t: t[1])
    outermost: list[tuple[str, int, int]] = []
    for box in found:
        if not outermost or box[1] >= outermost[-1][2]:
            outermost.append(box)
    return outermost


def peel_box(content: str) -> str:
    """``content`` without boxes that wrap all of it: ``\\boxed{9}`` -> ``9``;
    ``\\boxed{9}+1`` is unchanged."""
    content = content.strip()
    for _ in range(100):  # bounded: each round removes one wrapper
        boxes = boxed_all(content)
        if len(boxes) != 1 or boxes[0][1] != 0 or boxes[0][2] != len(content):
            break
        content = boxes[0][0].strip()
    return content


def last_boxed(text: str) -> str | None:
    """Content of the last outermost box (peeled, stripped), or None when there is none."""
    boxes = boxed_all(text)
    return peel_box(boxes[-1][0]) if boxes else None


def hash_answer(text: str) -> str | None:
    """The first line of text after the last ``####`` (GSM8K), stripped; None when ``####``
    is absent or nothing follows it."""
    pos = text.rfind("####")
    if pos == -1:
        return None
    rest = text[pos + 4:].lstrip()
    return rest.split("\n", 1)[0].strip() or None


def extract_answer(text: str, answer_format: str = "auto") -> str | None:
    """The gold answer in a dataset's answer ``text`` per ``answer_format``; None when absent.

    ``gsm8k``: :func:`hash_answer`, thousands separators removed (``1,234`` -> ``1234``);
    ``boxed``: :func:`last_boxed`; ``raw``: the stripped text; ``auto``: ``gsm8k`` when
    ``####`` occurs, else ``boxed`` when a box does, else ``raw``.
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}, got {answer_format!r}")
    text = str(text)
    if answer_format == "auto":
        answer_format = "gsm8k" if "####" in text else "boxed" if ("\\boxed" in text or "\\fbox" in text) else "raw"
    if answer_format == "gsm8k":
        answer = hash_answer(text)
        return answer.replace(",", "") if answer and _THOUSANDS.match(answer) else answer
    if answer_format == "boxed":
        return last_boxed(text)
    return text.strip() or None
