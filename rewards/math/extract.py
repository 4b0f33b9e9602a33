"""Find the final answer in a full completion: last ``\\boxed{}``, ``####``, "the answer is",
the last ``$…$``, or the last number — in a configurable order.

Linear-time scans only (no backtracking regexes over the whole completion), so a megabyte
completion costs milliseconds in the parent process.
"""
from __future__ import annotations

import re
from typing import Iterable, NamedTuple

from ...answers import boxed_all, hash_answer, peel_box

STRATEGIES = ("boxed", "hash", "answer_is", "dollar", "last_number")
_MAX_SCAN = 20_000  # the final answer sits at the end; only the tail is scanned by the regexes
_SOLUTION_CHARS = 200  # a gold this long with prose in it is a worked solution, not an answer


class Extracted(NamedTuple):
    """The answer text, the strategy that found it, and whether it is a hedge (several
    different answers offered, e.g. ``\\boxed{5} or \\boxed{6}``); ``parts``: a hedge's boxes,
    in order (they are the answer when the gold is a list of as many values); ``labelled``:
    the final boxes as ``name=value`` when each names its own variable (``k=…, n=…``)."""

    text: str
    strategy: str
    hedge: bool = False
    parts: tuple[str, ...] = ()
    labelled: tuple[str, ...] = ()
    end: int = -1  # where a box ends in the text scanned (boxed only)


# Words joining two boxes that make them one hedged answer rather than a revision.
_HEDGE_JOINERS = {"", ",", "or", "and", "/", ";", "or maybe", "or possibly", "either"}


# A variable named just before a box: "x = \boxed{…}", "$x=\boxed{…}".
# A subscript belongs to the name: "y_1 = \boxed{…}", "y_{2}=\boxed{…}".
_LABEL = re.compile(r"([A-Za-z](?:_\{?[A-Za-z0-9]{1,3}\}?)?)\s*=\s*\$?\s*$")


def _label_name(label: re.Match[str]) -> str:
    return label.group(1).replace("{", "").replace("}", "")  # y_{1} and y_1 name one variable


def _last_box(text: str) -> Extracted | None:
    boxes = boxed_all(text)
    if not boxes:
        return None
    run = [peel_box(boxes[-1][0])]  # the last box and the boxes joined to it, last first
    for (prev, prev_start, prev_end), (_, start, _) in zip(reversed(boxes[:-1]), reversed(boxes[1:])):
        between = text[prev_end:start]
        label = _LABEL.search(between[-40:])
        if label:  # "x=\boxed{2} or x=\boxed{-3}": one variable twice; "a=…, b=…" are two answers
            earlier = _LABEL.search(text[max(0, prev_start - 40):prev_start])
            if earlier is None or _label_name(earlier) != _label_name(label):
                break
            between = between[:len(between) - len(between[-40:]) + label.start()]
        joiner = re.sub(r"[\s$\\()\[\]{}]|text|quad", "", between).strip().lower()
        if re.sub(r"\s+", " ", joiner) not in _HEDGE_JOINERS:
            break
        run.append(peel_box(prev))
    hedge = len(set(run)) > 1
    return Extracted(run[0], "boxed", hedge, tuple(reversed(run)) if hedge else (), _labelled(text, boxes),
                     boxes[-1][2])


def _labelled(text: str, boxes: list[tuple[str, int, int]]) -> tuple[str, ...]:
    """``("k=45", "n=2")`` for a completion ending in boxes that each follow their own variable
    ("k=\\boxed{45}, n=\\boxed{2}"); empty when the last two boxes are not so labelled."""
    labelled: list[str] = []
    seen: set[str] = set()
    for content, start, _ in reversed(boxes):
        label = _LABEL.search(text[max(0, start - 40):start])
        if label is None or _label_name(label) in seen:
            break
        seen.add(_label_name(label))
        labelled.append(f"{_label_name(label)}={content.strip()}")
    return tuple(reversed(labelled)) if len(labelled) > 1 else ()


# "answer is" extraction: the LAST lead-in on its own, then the text after it up to a full
# stop or a newline. (A lead-in and its answer as one pattern matched the first lead-in of
# Minerva's "Final Answer: The final answer is $2$." and its ``.+?``-then-lookahead was
# quadratic on a long line of spaces.)
_ANSWER_LEAD = re.compile(r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*", re.IGNORECASE)
_HAS_MATH = re.compile(r"\d|\\[A-Za-z]")
_ANSWER_END = re.compile(r"\.(?:\s|$)|\n")
# Where the answer ends and its justification starts: "42, since …", "42 because …". A comma
# before a number or "or"/"and" stays: "1, 2, 3" is a list, "5, or 6" a hedge for the checker.
_ANSWER_REASON = re.compile(r",\s+(?!(?:and|or)\b)(?=[A-Za-z]{2})|(?<!\s)\s+(?:since|because)\b", re.IGNORECASE)


def _cut_reason(text: str) -> str:
    """``text`` up to its first top-level (outside brackets and ``$…$``) reason clause."""
    depth, in_math, pos = 0, False, 0
    for r in _ANSWER_REASON.finditer(text):
        for c in text[pos:r.start()]:  # one pass in total: matches come in order
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth = max(0, depth - 1)
            elif c == "$":
                in_math = not in_math
        pos = r.start()
        if depth == 0 and not in_math:
            return text[:r.start()]
    return text


def _answer_is(tail: str) -> str | None:
    lead = _last_match(_ANSWER_LEAD, tail)
    if lead is None:
        return None
    rest = tail[lead.end():]
    end = _ANSWER_END.search(rest)
    text = rest[:end.start()] if end else rest
    text = _cut_reason(text.strip().strip("*").strip())
    text = _after_copula(text)
    if len(_PROSE_WORD.findall(text)) >= 2:  # "Final Answer: Jane started Sphere 3 hours ago"
        found = _last_math(text)
        if found is not None:
            return found.text
    return text.strip().strip("*").strip() or None  # "**5**", "**Answer:** 5": markdown bold


# "Final Answer: The largest $n$ is 34": the answer is what the sentence says the thing is.
_COPULA = re.compile(r"\s(?:is|are|equals|was|will be)\s+")


def _after_copula(text: str) -> str:
    """The predicate of a one-sentence answer ("The largest $n$ is 34" -> "34"); text that
    has no such verb, or no prose before it, is returned unchanged."""
    verb = _last_match(_COPULA, text)
    if verb is None or not _PROSE_WORD.search(text[:verb.start()]):
        return text
    return text[verb.end():]

# A display block does not contain its own opener: stopping ``\[``/``\(`` at the next opener
# keeps the scan linear (an unclosed "\[" repeated 9000 times rescanned the tail per opener).
_DOLLAR = re.compile(r"\$\$(.+?)\$\$|\$([^$]+?)\$|\\\[((?:(?!\\\[).)+?)\\\]|\\\(((?:(?!\\\().)+?)\\\)",
                     re.DOTALL)
_NUMBER = re.compile(r"(?<![A-Za-z^_{])-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?\s*%?")


# a plain word of three or more letters (LaTeX commands such as \frac and \text{...} excluded)
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z{])[A-Za-z]{3,}(?![A-Za-z]*})")


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):
        pass
    return last


# Chat-template tokens a model keeps writing after its answer ("… is 120. <|im_start|>user …"):
# what follows is another turn, not this answer.
_CHAT_DEBRIS = re.compile(r"<\|(?:im_start|im_end|endoftext|eot_id|end|user|assistant|system|start_header_id)\|>|</s>")


def strip_chat_debris(text: str) -> str:
    """``text`` up to the first chat-template token that follows some content."""
    for m in _CHAT_DEBRIS.finditer(text[:4 * _MAX_SCAN]):
        if text[:m.start()].strip():
            return text[:m.start()]
    return text


def _last_dollar(tail: str) -> re.Match[str] | None:
    # The last $…$ that holds math: two currency signs in prose ("at $2 each, so she makes
    # $18") pair into a "formula" full of words, which is skipped.
    for m in reversed(list(_DOLLAR.finditer(tail))):
        inner = next(g for g in m.groups() if g is not None).strip()
        if inner and not _PROSE_WORD.search(inner):
            return m
    return None


def _last_math(tail: str) -> Extracted | None:
    """The answer a prose solution ends on: its last ``$…$`` or its last number, whichever
    comes later ("… $d = 90/n$ … so there are 12 sequences" ends on 12)."""
    dollar, number = _last_dollar(tail), _last_match(_NUMBER, tail)
    if number is not None and (dollar is None or number.start() >= dollar.end()):
        return Extracted(number.group(0).strip(), "last_math")
    if dollar is not None:
        return Extracted(next(g for g in dollar.groups() if g is not None).strip(), "last_math")
    return None


def extract(text: str, strategies: Iterable[str] = STRATEGIES) -> Extracted | None:
    """The final answer of ``text`` by the first strategy that finds one, or None."""
    strategies = tuple(strategies)
    text = strip_chat_debris(text)
    tail = text[-_MAX_SCAN:]
    for strategy in strategies:
        if strategy == "boxed":
            scanned = text if len(text) <= 4 * _MAX_SCAN else tail
            found = _last_box(scanned)
            if found is not None:
                later = _answer_is(scanned[found.end:][-_MAX_SCAN:]) if "answer_is" in strategies else None
                # "\boxed{200} … \boxed{255} … Final Answer: The final answer is $10,455$": a
                # stated answer after the last box is the one the solution ends on
                if later is not None and _HAS_MATH.search(later):
                    return Extracted(later, "answer_is")
                return found
        elif strategy == "hash":
            answer = hash_answer(tail)
            if answer is not None:
                return Extracted(answer, "hash")
        elif strategy == "answer_is":
            answer = _answer_is(tail)
            if answer is not None:
                return Extracted(answer, "answer_is")
        elif strategy == "dollar":
            m = _last_dollar(tail)
            if m is not None:
                return Extracted(next(g for g in m.groups() if g is not None).strip(), "dollar")
        elif strategy == "last_math":  # whichever of the last $…$ and the last number ends later
            found = _last_math(tail)
            if found is not None:
                return found
        elif strategy == "last_number":
            m = _last_match(_NUMBER, tail)
            if m:
                return Extracted(m.group(0).strip(), "last_number")
        elif strategy == "whole":
            if text.strip():
                return Extracted(text.strip(), "whole")
        else:
            raise ValueError(f"unknown extraction strategy {strategy!r}; choose from {', '.join(STRATEGIES + ('last_math', 'whole'))}")
    return None


def unwrap_gold(gold: str) -> str:
    """A gold answer as stored in datasets: bare LaTeX, a GSM8K ``… #### 42`` solution, or a
    MATH solution with a ``\\boxed{}``; returns the answer part."""
    if "####" in gold:
        return hash_answer(gold) or ""
    if "\\boxed" in gold or "\\fbox" in gold:
        boxes = boxed_all(gold)
        if len(boxes) > 1 and len(gold) < 500:  # "\\boxed{1} and \\boxed{-2}": a gold of several values
            return ", ".join(peel_box(b[0]) for b in boxes)
        found = _last_box(gold)
        if found is not None:
            return found.text
    if len(gold) > _SOLUTION_CHARS and _PROSE_WORD.search(gold):
        # a worked solution without a box: "… Final Answer: The final answer is $28\%$."
        stated = _answer_is(gold[-_MAX_SCAN:])
        if stated is not None:
            return stated
    return gold.strip()
