"""One gold/prediction check, split in two halves.

``precheck`` runs in the parent without sympy: clean-up, guards, hedges, multiple-choice
letters, words, and plain numbers (exact ``Fraction`` arithmetic). It decides most checks of
a training run in microseconds. ``check_parsed`` runs in a worker (time/memory limited):
parse both sides and compare them with ``math_equiv``.
"""
from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from .extract import unwrap_gold
from .guard import MAX_ANSWER_CHARS, refuse_reason
from .text import (PlainNumber, clean_unicode, numbers_match, parse_plain_number, split_percent, split_top_level,
                   strip_noise)

PERCENT_POLICIES = ("both", "fraction", "number")
# "rftgym": rftgym's own parser and comparison only; "rftgym+math-verify": math-verify is asked
# where rftgym's answer is no and not final (see second_opinion.py).
ENGINES = ("rftgym+math-verify", "rftgym")


@dataclass(frozen=True)
class CheckOptions:
    """How answers compare. ``percent``: what ``28\\%`` may equal (``"both"``: 28 or 0.28,
    ``"fraction"``: 0.28, ``"number"``: 28); ``rel_tol``: relative tolerance for a decimal that
    approximates a non-terminating value; ``comma_decimal``: read ``1,22`` as 1.22;
    ``engine``: ``"rftgym+math-verify"`` (default) or ``"rftgym"`` alone."""

    percent: str = "both"
    rel_tol: float = 1e-6
    comma_decimal: bool = True
    max_answer_chars: int = MAX_ANSWER_CHARS
    engine: str = "rftgym+math-verify"

    def __post_init__(self) -> None:
        if self.percent not in PERCENT_POLICIES:
            raise ValueError(f"percent must be one of {PERCENT_POLICIES}, got {self.percent!r}")
        if not self.rel_tol >= 0:
            raise ValueError(f"rel_tol must be >= 0, got {self.rel_tol!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")


class Prepared(NamedTuple):
    """Cleaned answers and, when the parent could decide, the verdict and why."""

    gold: str
    pred: str
    verdict: bool | None
    reason: str


_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_BOXED = re.compile(r"^\\(?:boxed|fbox)\s*\{(.*)\}$", re.DOTALL)
# A choice letter, alone or with its option's text ("C. x = 42", "(B) 12 cm").
_LETTER = re.compile(r"^\(?([A-J])\)?(?:$|[.:)]\s+\S|(?<=\))\s+\S)")
_LETTER_PRED = re.compile(r"^(?:option\s+|choice\s+)?\(?([A-J])\)?(?:[.:)]|\s|$)", re.IGNORECASE)
# Another standalone choice letter after the chosen one ("A and B", "(A) (B) (C) (D)"): a hedge.
_OTHER_LETTER = re.compile(r"(?<![A-Za-z\\])[A-J](?![A-Za-z])")
_OTHER_LETTER_LOWER = re.compile(r"(?<![A-Za-z\\])[a-j](?![A-Za-z])")
_HEDGE = re.compile(r"\bor\b|\\(?:lor|vee)(?![a-zA-Z])", re.IGNORECASE)
_WORD = re.compile(r"^[A-Za-z][A-Za-z \-']*$")
_LONG_WORD = re.compile(r"[A-Za-z]{4,}")  # "Monday", "yes and no"; not "ab" (a product of names)
_DECIMAL_LITERAL = re.compile(r"\d\.\d|(?<![\d}])\.\d")


# "20 \text{ dollars}", "15 \mbox{inches}": a unit word after a number is dropped.
_UNIT = re.compile(r"^(.*\d)\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}$")
# "12 cookies", "4.5 km": one plain word after a plain number is its unit, unless it changes
# the value ("5 thousands", "3 fifths", "5 below"), names a different quantity than the
# gold's own unit ("3 pm" for "3 am", "10 weeks" for "10 days"), or is two letters and not a
# known unit ("5 xy" is a product). The pattern has no nested repetition: linear on any input.
_PLAIN_UNIT = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s*([A-Za-z]{2,})\.?$")
# "1,000.99 m^2", "12 cm^3": a short unit with a power is a unit, whatever its length.
_POWER_UNIT = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s*(?:[mck]?m|dm|ft|in|yd|mi)\^\{?[23]\}?\.?$")
_TWO_LETTER_UNITS = frozenset({"cm", "km", "mm", "kg", "mg", "ml", "ft", "yd", "mi", "lb", "oz", "hr", "ms"})
_NOT_UNITS = frozenset({
    "and", "or", "nor", "not", "but", "than", "plus", "minus", "times", "over", "under", "divided", "per",
    "below", "above", "less", "more", "fewer", "least", "most", "only", "maybe", "approximately", "about",
    "roughly", "nearly", "almost", "repeating", "recurring", "choose", "factorial", "squared", "cubed",
    "hundred", "hundreds", "thousand", "thousands", "million", "millions", "billion", "billions", "trillion",
    "trillions", "dozen", "dozens", "score", "percent", "pi", "sqrt", "root", "roots", "sin", "cos", "tan",
    "log", "ln", "exp", "mod", "inf", "infinity", "half", "halves", "third", "thirds", "quarter", "quarters",
    "north", "south", "east", "west", "bce", "if", "when", "unless", "none", "all", "each", "both",
})


def _plain_unit(s: str) -> tuple[str, str] | None:
    """``(number, unit word)`` of "12 cookies"; None when there is no unit word to drop."""
    m = _PLAIN_UNIT.match(s)
    if m is None:
        return None
    word = m.group(2).lower()
    if word in _NOT_UNITS or word.endswith(("th", "ths")) or (len(word) == 2 and word not in _TWO_LETTER_UNITS):
        return None  # "5 fifths", "3 tenths": ordinals are fractions
    return m.group(1), word


def _strip_plain_units(g: str, p: str) -> tuple[str, str]:
    """Drop the unit words of "12 cookies"-style answers; kept when gold and prediction name two
    different units, so they then differ."""
    g, p = _POWER_UNIT.sub(r"\1", g), _POWER_UNIT.sub(r"\1", p)
    gu, pu = _plain_unit(g), _plain_unit(p)
    if gu and pu and gu[1].rstrip("s") != pu[1].rstrip("s"):
        return g, p
    return (gu[0] if gu else g), (pu[0] if pu else p)


_SPACE = re.compile(r"(?<![A-Za-z])\s+|\s+(?![A-Za-z])")


def _squash(s: str) -> str:
    # Spaces mean nothing in math mode except between letters ("\pi r" is not "\pir").
    return _SPACE.sub("", s)


def _untext(s: str) -> str:
    return _TEXT_CMD.sub(lambda m: m.group(1), s).strip()


def clean_answer(text: str) -> str:
    """Unicode clean-up, display noise and an outer ``\\boxed{}`` removed; a comma list in
    plain braces (``{1,2,3}``, which LaTeX prints without braces) read as the set ``\\{1,2,3\\}``."""
    s = strip_noise(clean_unicode(text))
    m = _BOXED.match(s)
    if m:
        s = strip_noise(m.group(1))
    return _array_as_matrix(_braces_as_set(s))


# "\left[\begin{array}{cc}1 & 2 \\ 3 & 4\end{array}\right]": a matrix written as an array in brackets
_ARRAY = re.compile(r"^[\[(]?\s*\\begin\{array\}\{[lcr|\s]*\}(.*)\\end\{array\}\s*[\])]?$", re.DOTALL)


def _array_as_matrix(s: str) -> str:
    m = _ARRAY.match(s)
    if m is None or (s[0] in "[(") != (s[-1] in "])"):
        return s
    return f"\\begin{{pmatrix}}{m.group(1)}\\end{{pmatrix}}"


def _braces_as_set(s: str) -> str:
    if not (s.startswith("{") and s.endswith("}")):
        return s
    parts = split_top_level(s[1:-1])
    return f"\\{{{s[1:-1]}\\}}" if parts is not None and len(parts) > 1 and all(p.strip() for p in parts) else s


# A time of day: "20:34", "8:34:00", "08:34 P.M." (two-digit minutes, so a ratio "3:4" is not one).
_CLOCK = re.compile(r"^(\d{1,2}):([0-5]\d)(?::([0-5]\d))?\s*(?:([ap])\.?\s*m\.?)?$", re.IGNORECASE)


def _clock(text: str) -> int | None:
    """Seconds after midnight of a time of day, or None. ``12:05 am`` is 0:05, ``12:05 pm`` 12:05."""
    m = _CLOCK.match(text.strip())
    if m is None:
        return None
    hours, minutes, seconds = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    half = (m.group(4) or "").lower()
    if half:
        if not 1 <= hours <= 12:
            return None
        hours = hours % 12 + (12 if half == "p" else 0)
    elif hours > 23:
        return None
    return (hours * 60 + minutes) * 60 + seconds


def _plain(text: str, opts: CheckOptions) -> tuple[list, bool] | None:
    body, is_percent = split_percent(text)
    number = parse_plain_number(body, opts.comma_decimal)
    if number is None:
        return None
    return [number], is_percent


def _percent_readings(numbers: list, is_percent: bool, opts: CheckOptions) -> list:
    if not is_percent or opts.percent == "number":
        return numbers
    scaled = [PlainNumber(n.value / Fraction(100), n.decimal) for n in numbers]
    return scaled if opts.percent == "fraction" else numbers + scaled


def precheck(gold: str, pred: str, opts: CheckOptions) -> Prepared:
    """Clean both answers and decide in the parent when no parsing is needed."""
    g = clean_answer(unwrap_gold(clean_unicode(gold)))
    if len(pred) > 4 * opts.max_answer_chars:
        # Refuse before clean-up: its regexes run in the parent with no time limit, and no
        # honest answer shrinks from this size to under the length guard.
        return Prepared(g, pred, False, "prediction refused: too long")
    p = clean_answer(pred)
    if not p:
        return Prepared(g, p, False, "empty prediction")
    if not g:
        return Prepared(g, p, False, "empty gold")
    if g == p or _squash(g) == _squash(p):
        return Prepared(g, p, True, "identical")
    for side, text in (("gold", g), ("prediction", p)):
        reason = refuse_reason(text, opts.max_answer_chars)
        if reason is not None:
            return Prepared(g, p, False, f"{side} refused: {reason}")
    if _HEDGE.search(p) and not _HEDGE.search(g):
        return Prepared(g, p, False, "hedged answer")
    gold_time, pred_time = _clock(_untext(g)), _clock(_untext(p))  # before "P.M." is dropped as a unit
    if gold_time is not None and pred_time is not None:
        return Prepared(g, p, gold_time == pred_time, "times of day")
    g, p = _strip_plain_units(_UNIT.sub(r"\1", g), _UNIT.sub(r"\1", p))
    gt, pt = _untext(g), _untext(p)
    letter = _LETTER.match(gt)
    if letter:
        m = _LETTER_PRED.match(pt)
        if m:
            # Other letters count in the case the model chose, so "(a) a short proof" stays A.
            others = _OTHER_LETTER if m.group(1).isupper() else _OTHER_LETTER_LOWER
            # ... up to the explanation: "A. Because B is not valid" chose A.
            prose = _LONG_WORD.search(pt, m.end())
            end = prose.start() if prose else len(pt)
            if any(o.group(0) != m.group(1) for o in others.finditer(pt, m.end(), end)):
                return Prepared(g, p, False, "multiple choice hedge")
        if m or letter.end() == len(gt):
            return Prepared(g, p, bool(m) and m.group(1).upper() == letter.group(1), "multiple choice")
        # "C. x = 42" answered by the option's content rather than its letter
        g = gt = gt[letter.end() - 1:].strip()
    if _WORD.match(gt) and _WORD.match(pt) and _LONG_WORD.search(gt):
        return Prepared(g, p, gt.strip().lower() == pt.strip().lower(), "words")
    gold_num, pred_num = _plain(g, opts), _plain(p, opts)
    if gold_num is not None and pred_num is not None:
        golds = _percent_readings(*gold_num, opts)
        preds = _percent_readings(*pred_num, opts)
        ok = any(numbers_match(a, b, opts.rel_tol) for a in golds for b in preds)
        return Prepared(g, p, ok, "plain numbers")
    return Prepared(g, p, None, "")


class OwnCheckTimeout(BaseException):
    """rftgym's own comparison ran out of its share of the worker's time. A BaseException, so
    that the broad ``except Exception`` around sympy calls cannot swallow it."""


def _out_of_time(signum: int, frame: object) -> None:
    raise OwnCheckTimeout


def check_parsed(gold: str, pred: str, opts: CheckOptions, own_seconds: float | None = None) -> tuple[bool, str]:
    """Parse both cleaned answers and compare them (run this in a limited worker).

    ``own_seconds`` (main thread only: a timer signal) bounds rftgym's own comparison, so a
    case it cannot settle quickly (a symbolic sum) still gets math-verify's opinion within the
    pool's hard limit instead of costing a killed worker.
    """
    if not own_seconds:
        return _check_parsed(gold, pred, opts)
    previous = signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, own_seconds)
    try:
        return _check_parsed(gold, pred, opts)
    except OwnCheckTimeout:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return _second_opinion(gold, pred, opts, "own check timed out")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_parsed(gold: str, pred: str, opts: CheckOptions) -> tuple[bool, str]:
    from .equiv import Context, equivalent
    from .parse import parse_answer
    from .second_opinion import exact_numbers, exact_polynomials

    # MemoryError/RecursionError are resource limits, not verdicts: they propagate to the
    # worker, which answers "memory limit"/"recursion limit" (and the verifier does not cache
    # a memory-limit result as a wrong answer).
    try:
        golds = parse_answer(gold, opts.percent)
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is a verdict, not a crash
        signal.setitimer(signal.ITIMER_REAL, 0)
        return _second_opinion(gold, pred, opts, f"gold unparsable: {type(exc).__name__}")
    try:
        preds = parse_answer(pred, opts.percent)
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # noqa: BLE001
        signal.setitimer(signal.ITIMER_REAL, 0)
        return _second_opinion(gold, pred, opts, f"prediction unparsable: {type(exc).__name__}")
    ctx = Context(opts.rel_tol, bool(_DECIMAL_LITERAL.search(gold)), bool(_DECIMAL_LITERAL.search(pred)))
    for a in golds:
        for b in preds:
            try:
                if equivalent(a, b, ctx):
                    return True, "equivalent"
            except (MemoryError, RecursionError):
                raise
            except Exception:  # noqa: BLE001 - sympy raises many types on odd objects
                continue
    if (exact_numbers(golds) and exact_numbers(preds)) or exact_polynomials(golds, preds):
        return False, "different"  # exact values (or polynomials) compared exactly: final
    signal.setitimer(signal.ITIMER_REAL, 0)  # math-verify sets its own alarms
    return _second_opinion(gold, pred, opts, "different")


def _second_opinion(gold: str, pred: str, opts: CheckOptions, reason: str) -> tuple[bool, str]:
    """math-verify's verdict where rftgym's own parser or comparison gave up (``engine``)."""
    if opts.engine != "rftgym+math-verify":
        return False, reason
    from .second_opinion import mathverify_equal  # sympy and math-verify: worker side only

    return mathverify_equal(gold, pred)
