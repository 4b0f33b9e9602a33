"""Gold-answer extraction from dataset answer columns: GSM8K ``#### 42`` and MATH ``\\boxed{...}``."""
from __future__ import annotations

import re

ANSWER_FORMATS = ("auto", "gsm8k", "boxed", "raw")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, or None.

    One pass with a stack of open braces (linear: completions reach this through the format
    rewards, and re-scanning from every ``\\boxed{`` was quadratic on nested boxes).
    """
    opens = {m.end() - 1 for m in _BOXED.finditer(text)}  # index of each box's "{"
    stack: list[int] = []
    best: tuple[int, int] | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:  # skip escaped braces such as \{ and \}
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            start = stack.pop()
            if start in opens and (best is None or start > best[0]):
                best = (start, i)
        i += 1
    if best is not None:
        return text[best[0] + 1:best[1]].strip()
    # "\boxed 5" (no braces) is also valid LaTeX
    match = None
    for match in re.finditer(r"\\boxed\s+([^\s$]+)", text):
        pass
    return match.group(1).strip() if match else None


def gsm8k_answer(text: str) -> str | None:
    """The text after the last ``####`` (thousands separators removed), or None."""
    if "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip()
    if _THOUSANDS.match(answer):
        answer = answer.replace(",", "")
    return answer or None


def extract_answer(text: str, answer_format: str = "auto") -> str | None:
    """The gold answer in ``text`` per ``answer_format``; None when it cannot be found.

    ``auto`` picks ``gsm8k`` when ``####`` occurs, ``boxed`` when ``\\boxed`` occurs, else ``raw``
    (the stripped text).
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}, got {answer_format!r}")
    text = str(text)
    if answer_format == "auto":
        answer_format = "gsm8k" if "####" in text else "boxed" if _BOXED.search(text) or "\\boxed" in text else "raw"
    if answer_format == "gsm8k":
        return gsm8k_answer(text)
    if answer_format == "boxed":
        return last_boxed(text)
    return text.strip() or None
