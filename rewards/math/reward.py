"""The verifiable math reward (``math``) and ``verify(gold, prediction) -> bool``.

Pipeline per completion: take the text (TRL conversational lists too) -> extract the final
answer (``extract``) -> decide in the parent when it is cheap and safe (plain numbers,
letters, guards; ``check.precheck``) -> otherwise parse and compare in a time- and
memory-limited worker process (``pool``), caching verdicts. Model text is never
evaluated as Python.
"""
from __future__ import annotations

import atexit
import re
import threading
from typing import Any, Sequence

from .check import CheckOptions, clean_answer
from .extract import STRATEGIES, Extracted, extract, strip_chat_debris, unwrap_gold
from .guard import MAX_ANSWER_CHARS
from .text import clean_unicode, split_top_level
from .verifier import MathVerifier

__all__ = ["MathReward", "verify", "completion_text"]

_VERIFY_MARKERS = ("boxed", "hash", "answer_is")
_COMMA_NUMBER = re.compile(r"-?\d+(?:,\d+)+(?:\.\d+)?")
# A prediction with prose in it ("we find 0.5") is a solution, not a bare answer; LaTeX
# commands and \text{} units do not count as prose.
_LATEX_WORDS = re.compile(r"\\(?:text|mbox|mathrm)\{[^{}]*\}|\\[A-Za-z]+")
# Prose: a newline, or a 4-letter word followed later on the line by a space and a 2-letter
# word. Written as two linear scans: the single regex ``[A-Za-z]{4,}[^\n]*\s[A-Za-z]{2,}``
# backtracked cubically on "hahaha…" (10 s for 2000 characters, in the parent).


_BARE_LABEL = re.compile(r"^[A-Za-z][A-Za-z ]{0,24}:\s*(?:\*\*)?")
_DELIMITED = re.compile(r"\$[^$]+\$|\\\[.*?\\\]|\\\(.*?\\\)", re.DOTALL)
_WORD = re.compile(r"(?<![\\A-Za-z{])[A-Za-z]{2,}(?![A-Za-z]*})")  # not \cmd, not {pmatrix}
_MATH_WORDS = frozenset({"pi", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "inf",
                         "infty", "infinity", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "mod",
                         "max", "min", "gcd", "lcm", "det", "or", "and"})


def _has_prose(text: str) -> bool:
    """A sentence rather than a bare answer: a line break, or two words that are not math names
    ("She makes $18.", "So we get $x$ as the result."); one word may be an answer ("yes", "5 cm")."""
    if "\n" in text:
        return True
    words = 0
    for match in _WORD.finditer(text):  # linear: one pass, stops at the second word
        if match.group(0).lower() not in _MATH_WORDS:
            words += 1
            if words >= 2:
                return True
    return False


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's conversational form (a list of
    ``{"role", "content"}`` messages, or one such dict) -> the last assistant content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        chosen = assistant or messages
        return _content(chosen[-1].get("content")) if chosen else ""
    return "" if completion is None else str(completion)


def _content(content: Any) -> str:
    if isinstance(content, list):  # multimodal content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


class MathReward:
    """Reward 1.0 when the completion's final answer equals the gold ``answer``, else 0.0.

    Options: ``extraction`` (``"auto"``, the default: the reading ``verify`` uses; or
    strategies in order, from ``boxed``, ``hash``, ``answer_is``, ``dollar``,
    ``last_number``), ``require_boxed`` with ``format_score`` (the reward for a correct
    answer found by another strategy), ``timeout`` (seconds per check in a worker),
    ``memory_mb`` (worker address-space cap), ``workers`` (default: the CPUs), ``percent``
    (``"both"``, ``"fraction"``, ``"number"``), ``rel_tol``, ``comma_decimal``,
    ``max_answer_chars``, ``cache_size``, ``engine`` (``"rftgym+math-verify"``, the default:
    math-verify is asked where rftgym's own answer is no and not final; ``"rftgym"``: alone).
    """

    def __init__(self, extraction: Sequence[str] | str = "auto", require_boxed: bool = False,
                 format_score: float = 0.0, timeout: float = 5.0, memory_mb: int | None = 2048,
                 workers: int | None = None, percent: str = "both", rel_tol: float = 1e-6,
                 comma_decimal: bool = True, max_answer_chars: int = MAX_ANSWER_CHARS,
                 cache_size: int = 100_000, engine: str = "rftgym+math-verify") -> None:
        # "auto": read a completion exactly as verify() does (a bare answer whole, a solution
        # by its marked answer, then its last $…$ or number).
        self.extraction = "auto" if extraction == "auto" else tuple(extraction)
        unknown = [s for s in self.extraction if s not in STRATEGIES] if self.extraction != "auto" else []
        if unknown or not self.extraction:
            raise ValueError(f"extraction must be 'auto' or list strategies from {STRATEGIES}, got {extraction!r}")
        self.require_boxed = require_boxed
        self.format_score = float(format_score)
        options = CheckOptions(percent=percent, rel_tol=rel_tol, comma_decimal=comma_decimal,
                               max_answer_chars=max_answer_chars, engine=engine)
        self.verifier = MathVerifier(options, timeout=timeout, memory_mb=memory_mb, workers=workers,
                                     cache_size=cache_size)

    def _extract(self, text: str, gold: str) -> Extracted | None:
        """The configured strategies; for a multiple-choice gold, the marked ones, then the
        letter the solution opens with, before the unmarked ones (a last number is no letter)."""
        if self.extraction == "auto":
            return _answer_of(text, gold)
        choice = _choice(gold, text)
        if choice is None:
            return extract(text, self.extraction)
        marked = tuple(s for s in self.extraction if s in _VERIFY_MARKERS)
        return (extract(text, marked) if marked else None) or choice or extract(text, self.extraction)

    @property
    def stats(self) -> dict[str, int]:
        """How checks were decided (fast path, cache, worker) and the timeouts/crashes."""
        return self.verifier.stats

    def setup(self) -> None:
        """Start the worker pool (reused across batches until ``close``)."""
        self.verifier.start()

    def close(self) -> None:
        """Stop the worker pool."""
        self.verifier.close()

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 answer: Sequence[Any] | None = None, **columns: Any) -> list[float | None]:
        """Score a batch as TRL calls rewards: keyword arguments, one ``answer`` per completion;
        ``None`` for a sample without a gold answer."""
        completions = list(completions or [])
        if answer is None:
            return [None] * len(completions)
        if isinstance(answer, (str, int, float)):
            answer = [answer] * len(completions)
        answers = list(answer)
        if len(answers) != len(completions):
            raise ValueError(f"math reward: {len(completions)} completions but {len(answers)} answers")
        found: list[Extracted | None] = []
        pairs: list[tuple[str, str]] = []
        index: list[int] = []
        for i, (completion, gold) in enumerate(zip(completions, answers)):
            # clean_unicode first: extraction patterns are ASCII ("-?\d", "\boxed"), so "−4"
            # or a full-width "\boxed｛４｝" would otherwise be missed or lose its sign.
            text = clean_unicode(completion_text(completion)) if gold is not None else ""
            got = self._extract(text, str(gold)) if gold is not None else None
            found.append(got)
            answer_text = _checked_text(str(gold), got)
            if answer_text is not None:
                pairs.append((str(gold), answer_text))
                index.append(i)
        verdicts = self.verifier.verify_many(pairs)
        scores: list[float | None] = [None if g is None else 0.0 for g in answers]
        for i, ok in zip(index, verdicts):
            if ok:
                boxed = found[i] is not None and found[i].strategy == "boxed"  # type: ignore[union-attr]
                scores[i] = 1.0 if (boxed or not self.require_boxed) else self.format_score
        return scores


# -- verify(): one shared verifier for the whole process ------------------------------------
_default: MathVerifier | None = None
_default_lock = threading.Lock()


def _shared_verifier() -> MathVerifier:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                # One pair per call: a second worker starts only when threads call at once.
                _default = MathVerifier(start_workers=1)
                atexit.register(_default.close)
    return _default


def _checked_text(gold: str, found: Extracted | None) -> str | None:
    """The answer to check against ``gold``; None when there is none or it hedges.

    Boxes joined into one answer ("\\boxed{2} or \\boxed{-3}") are a hedge, unless the gold is a
    bare list of as many values and each box holds one distinct value: then they are its values.
    """
    if found is None:
        return None
    bare = clean_answer(unwrap_gold(clean_unicode(gold)))  # "$${1,2,3}$$" -> "\\{1,2,3\\}"
    if found.labelled and not found.hedge:
        # "k = 45, n = 2" answered by "k=\boxed{45}, n=\boxed{2}": the labelled boxes together
        parts = split_top_level(bare)
        if parts is not None and len(parts) == len(found.labelled) and all("=" in p for p in parts):
            return ", ".join(found.labelled)
    if not found.hedge:
        return found.text
    is_set = bare.startswith("\\{") and bare.endswith("\\}")
    inner = bare[2:-2] if is_set else bare
    # "1,000" and (comma decimals) "0,5" are one number, not a list
    parts = None if _COMMA_NUMBER.fullmatch(inner) and not is_set else split_top_level(inner)
    single = all(len(split_top_level(box) or ()) == 1 for box in found.parts)
    if (parts is not None and len(parts) == len(found.parts) == len(set(found.parts)) and single
            and all(p.strip() for p in parts)):
        listed = ", ".join(found.parts)
        return f"\\{{{listed}\\}}" if is_set else listed
    return None


_CHOICE_GOLD = re.compile(r"^\(?([A-J])\)?$")
_LEADING_CHOICE = re.compile(r"^\s*(?:\*\*)?\(?([A-J])\)?(?:[.:)]|\*\*|\s*$)")


def _choice(gold: str, text: str) -> Extracted | None:
    """For a multiple-choice gold (``A``), the letter a solution opens with ("A. Because …"),
    when it marks no answer otherwise; None for any other gold."""
    if not _CHOICE_GOLD.match(unwrap_gold(gold).strip()):
        return None
    m = _LEADING_CHOICE.match(text)
    return Extracted(text.strip()[:200], "choice") if m else None


def _answer_of(prediction: str, gold: str = "") -> Extracted | None:
    """A bare answer is taken whole; a solution gives its marked (boxed, ####, "answer is")
    answer, else (a multiple-choice gold) its opening letter, else its last ``$…$`` or number."""
    found = extract(prediction, _VERIFY_MARKERS) or _choice(gold, prediction)
    if found is not None:
        return found
    prediction = strip_chat_debris(prediction)
    bare = _BARE_LABEL.sub("", prediction.strip().strip("*").strip())  # "**15**", "Total: 15"
    if bare != prediction and bare and not _has_prose(_LATEX_WORDS.sub("", bare)):
        prediction = bare
    if len(prediction) <= MAX_ANSWER_CHARS and not _has_prose(_LATEX_WORDS.sub("", prediction)):
        if _WORD.search(_DELIMITED.sub(" ", prediction)) and _DELIMITED.search(prediction):
            return extract(prediction, ("dollar",))  # "Answer \\[ 9 \\]": the math is the answer
        return extract(prediction, ("whole",))
    return extract(prediction, ("last_math",))


def verify(gold: str, prediction: str) -> bool:
    """True when ``prediction`` (a bare answer or a full solution) states the gold answer.

    Safe from any thread: hard parsing runs in the shared, time-limited worker pool.
    """
    found = _answer_of(clean_unicode(completion_text(prediction)), str(gold))  # as in MathReward.__call__
    answer_text = _checked_text(str(gold), found)
    if answer_text is None:
        return False
    return _shared_verifier().verify_many([(str(gold), answer_text)])[0]
