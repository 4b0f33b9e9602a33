"""Text clean-up for math answers: Unicode, LaTeX noise, numbers written as text.

Pure string functions with no sympy import, so the parent process can use them on the fast
path (plain numbers decided with ``fractions.Fraction``) without any worker round-trip.
"""
from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

# Characters NFKC leaves alone but that models (and copy-pasted golds) use for plain ASCII.
_CHAR_MAP = str.maketrans({
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2012": "-",  # minus and dashes
    "\u00d7": r"\times ", "\u22c5": r"\cdot ", "\u00b7": r"\cdot ", "\u00f7": "/",
    "\u03c0": r"\pi ", "\u221a": r"\sqrt", "\u221e": r"\infty ", "\u2264": r"\le ", "\u2265": r"\ge ",
    "\u00b0": r"^\circ", "\u2009": " ", "\u202f": " ", "\u00a0": " ",
})
# Before NFKC, which would turn "x²" into "x2".
_SUPERSCRIPTS = str.maketrans({c: f"^{d}" for c, d in zip("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2060\ufeff]")


def clean_unicode(text: str) -> str:
    """NFKC-normalise (full-width digits, ligatures), map math symbols to ASCII/LaTeX, drop NULs
    and zero-width characters (so ``５`` reads as ``5`` and a NUL cannot split a token)."""
    text = _CONTROL.sub("", text).translate(_SUPERSCRIPTS)
    text = unicodedata.normalize("NFKC", text)
    return text.translate(_CHAR_MAP)


# LaTeX that carries no mathematical meaning for a final answer.
_NOISE = [
    (re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])\s*"), ""),
    (re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![a-zA-Z])"), ""),
    # "32,\! 349" and "1{,}000": a thousands comma with LaTeX spacing after it stays a comma
    (re.compile(r"(?<=\d),\\[!,]\s*(?=\d{3}(?!\d))"), ","),
    (re.compile(r"(?<!\\)\\[,;:! ]|\\quad|\\qquad|~"), " "),  # not a matrix row break
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\\$"), ""),
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree(?![a-zA-Z])"), ""),
    (re.compile(r"\{,\}"), ","),
]
# ``(?<!\$)``: try a trailing run of ``$`` only from its first one; otherwise every ``$`` of a
# long run rescans the rest of it (quadratic on "$$$…x").
_DOLLARS = re.compile(r"^\s*\$+|(?<!\$)\$+\s*$")
_MATH_DELIMS = re.compile(r"^\s*(?:\\\(|\\\[)|(?:\\\)|\\\])\s*$")


def _strip_trailing(text: str) -> str:
    """Drop trailing whitespace, ``.;:`` and a dangling ``\\`` (``185\\``: a line break or a
    cut-off command names no value) in one linear scan from the end (the regex
    ``[\\s.;:]+$`` restarted at every such character: quadratic, 9 s on 70 000 dots)."""
    end = len(text)
    while end and (text[end - 1] in ".;:\\" or text[end - 1].isspace()):
        end -= 1
    return text[:end]


# Text stored with every backslash doubled (a JSON or Python string escaped twice):
# ``\\\\frac{1}{5}``. Only when no single backslash occurs, so a matrix row break
# ``a \\\\ b`` beside ``\\begin`` is left alone.
_BACKSLASH_RUN = re.compile(r"\\+")
_DOUBLED_COMMAND = re.compile(r"\\\\[A-Za-z{}]")


def undouble_backslashes(text: str) -> str:
    """``\\\\frac{1}{2}`` -> ``\\frac{1}{2}`` when every backslash run in ``text`` has even
    length and some doubled one starts a command; other text is returned unchanged."""
    if "\\\\" not in text or not _DOUBLED_COMMAND.search(text):
        return text
    runs = _BACKSLASH_RUN.findall(text)
    if any(len(r) % 2 for r in runs):
        return text
    return _BACKSLASH_RUN.sub(lambda m: "\\" * (len(m.group(0)) // 2), text)


def strip_noise(text: str) -> str:
    """Remove display-only LaTeX (``\\left``, spacing, ``\\displaystyle``, degrees, ``\\$``),
    surrounding ``$``/``\\(``/``\\[`` delimiters, a trailing full stop or dangling backslash."""
    text = undouble_backslashes(text)
    text = _DOLLARS.sub("", text)
    text = _MATH_DELIMS.sub("", text)
    for pattern, repl in _NOISE:
        text = pattern.sub(repl, text)
    text = _strip_trailing(text)
    return text.strip()


# Matched against already right-stripped text, anchored at its end: a leading/trailing ``\s*``
# in the pattern made every start position scan the whole whitespace run (quadratic).
_PERCENT = re.compile(r"(?:\\%|%|\\text\{\s*percent\s*\}|(?<=\s)percent)$")


def split_percent(text: str) -> tuple[str, bool]:
    """``'28\\%'`` -> ``('28', True)``; text without a trailing percent sign is unchanged."""
    body = text.rstrip()
    m = _PERCENT.search(body)
    if m is None:
        return text, False
    return body[:m.start()].rstrip(), True


# A plain number as a model or a dataset writes it: sign, thousands separators (``,`` or
# ``\\,``-turned-space), a decimal point or a decimal comma, or a simple fraction ``a/b``.
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_THOUSANDS_SPACE = re.compile(r"^[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?$")
_COMMA_DECIMAL = re.compile(r"^([+-]?\d+),(\d+)$")
_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_SCIENTIFIC = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)[eE][+-]?\d{1,3}$")
_SIMPLE_FRACTION = re.compile(r"^([+-]?\d+)\s*/\s*([+-]?\d+)$")
_LATEX_FRACTION = re.compile(r"^([+-]?)\\frac\s*\{\s*([+-]?\d+)\s*\}\s*\{\s*(\d+)\s*\}$")
_MIXED_NUMBER = re.compile(r"^([+-]?)(\d+)(?:\s+(\d+)/(\d+)|\s*\\frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\})$")
_MAX_DIGITS = 200  # longer digit strings go to the worker, which is time- and memory-limited


class PlainNumber:
    """A number read from text exactly: ``value`` as a Fraction, ``decimal`` when written with
    a decimal point (so it may approximate an irrational or a repeating gold value)."""

    __slots__ = ("value", "decimal")

    def __init__(self, value: Fraction, decimal: bool) -> None:
        self.value = value
        self.decimal = decimal

    def __repr__(self) -> str:
        return f"PlainNumber({self.value}, decimal={self.decimal})"


def parse_plain_number(text: str, comma_decimal: bool = True) -> PlainNumber | None:
    """Read ``text`` as a plain number (no sympy), or return None when it is anything else.

    ``7,425,000`` groups thousands; ``1,22`` uses a decimal comma when ``comma_decimal`` (a
    comma followed by exactly three digits always groups thousands).
    """
    s = text.strip()
    if not s or len(s) > _MAX_DIGITS:
        return None
    if s.startswith("+"):
        s = s[1:]
    if _THOUSANDS.match(s) or _THOUSANDS_SPACE.match(s):
        s = s.replace(",", "").replace(" ", "")
    elif comma_decimal and (m := _COMMA_DECIMAL.match(s)) and len(m.group(2)) != 3:
        s = f"{m.group(1)}.{m.group(2)}"
    if _DECIMAL.match(s):
        return PlainNumber(Fraction(s), "." in s)
    if _SCIENTIFIC.match(s):
        return PlainNumber(Fraction(s), True)
    m = _SIMPLE_FRACTION.match(s) or None
    if m is not None:
        num, den = int(m.group(1)), int(m.group(2))
        return None if den == 0 else PlainNumber(Fraction(num, den), False)
    m = _MIXED_NUMBER.match(s)
    if m is not None:  # "3 1/4", "3\frac{1}{4}": a whole number and a proper fraction
        whole, num, den = int(m.group(2)), int(m.group(3) or m.group(5)), int(m.group(4) or m.group(6))
        if 0 < num < den:
            value = whole + Fraction(num, den)
            return PlainNumber(-value if m.group(1) == "-" else value, False)
    m = _LATEX_FRACTION.match(s)
    if m is not None:
        num, den = int(m.group(2)), int(m.group(3))
        if den == 0:
            return None
        value = Fraction(num, den)
        return PlainNumber(-value if m.group(1) == "-" else value, False)
    return None


def terminates(value: Fraction) -> bool:
    """True when ``value`` has a finite decimal expansion (denominator of 2s and 5s only)."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def numbers_match(gold: PlainNumber, pred: PlainNumber, rel_tol: float) -> bool:
    """Exact comparison; a tolerance only when one side is a decimal approximating a value
    that has no finite decimal expansion (``0.333333`` for ``1/3``)."""
    if gold.value == pred.value:
        return True
    approx = (pred.decimal and not terminates(gold.value)) or (gold.decimal and not terminates(pred.value))
    if not approx:
        return False
    diff = abs(gold.value - pred.value)
    scale = max(abs(gold.value), abs(pred.value))
    if diff <= Fraction(rel_tol) * scale * Fraction(1000001, 1000000):
        return True
    decimal = pred if pred.decimal and not terminates(gold.value) else gold
    places = stated_places(decimal.value)
    return places is not None and diff < Fraction(1, 10 ** places)


def stated_places(value: Fraction) -> int | None:
    """Decimal places of a decimal written with at least four significant digits and two
    places (``0.3333``: 4, ``1.333``: 3), else None. A decimal that rounds or truncates a non-terminating value
    to the places it states is that value: ``0.3333`` for ``1/3``, ``2.6667`` for ``8/3``;
    ``0.33``, ``3.14`` (for pi) or ``0.00`` say too little to count."""
    if not terminates(value):
        return None
    places = 0
    while value.denominator != 1:
        value *= 10
        places += 1
    if places < 2:
        return None
    return places if len(str(abs(value.numerator))) >= 4 else None


def split_top_level(inner: str) -> list[str] | None:
    """``a, (b, c), d`` -> ``['a', '(b, c)', 'd']``; None when brackets do not balance."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif c == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return parts if depth == 0 else None
