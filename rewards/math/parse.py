"""Answer text -> sympy objects, without evaluating the text as Python.

LaTeX goes through ``latex2sympy2_extended`` (an ANTLR grammar that builds sympy objects
node by node). Its only string-to-sympy conversions of input text are ``sympy.Number(text)``
on number tokens (``_Latex2Sympy.parse_number``) and on a whole answer matching a
thousands-separated number (``convert_number``); ``sympy.Number(str)`` calls ``sympify``,
i.e. ``eval``. The tokens are digits by the grammar, but ``SafeLatex2Sympy`` overrides both
paths anyway to build exact Rationals from digits with ``int``, so no input text ever reaches
``eval``. (Its other ``parse_expr`` call is on ``variable_values``, which we never pass.)
Plain text (``2*sqrt(3)``) goes through ``math_plain``'s restricted parser.
"""
from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from typing import Any

import sympy
from antlr4.atn.PredictionMode import PredictionMode
from antlr4.error.ErrorListener import ErrorListener
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, _Latex2Sympy, comma_number_regex
from latex2sympy2_extended.math_normalization import NormalizationConfig, normalize_latex

from .latex_lite import latex_to_plain
from .plain import PlainParseError, parse_plain
from .text import split_top_level, split_percent, strip_noise

_NUMBER_TEXT = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,4}))?")
_MAX_NUMBER_DIGITS = 4000

NORMALIZATION = NormalizationConfig(basic_latex=True, units=True, malformed_operators=True,
                                    nits=True, boxed="all", equations=False)
CONVERSION = ConversionConfig()


def safe_number(text: str) -> sympy.Rational:
    """Digits (thousands commas, decimal point, e-notation) -> an exact sympy Rational."""
    t = text.replace(",", "").replace(" ", "")
    m = _NUMBER_TEXT.fullmatch(t)
    if m is None or not (m.group(2) or m.group(3)):
        raise ValueError(f"not a number: {text[:40]!r}")
    sign, whole, frac, exp = m.group(1), m.group(2) or "", m.group(3) or "", m.group(4)
    if len(whole) + len(frac) > _MAX_NUMBER_DIGITS:
        raise ValueError("number too long")
    value = sympy.Rational(int(whole + frac or "0"), 10 ** len(frac))
    if exp is not None:
        value = value * sympy.Rational(10) ** int(exp)
    return -value if sign == "-" else value


class _SllSyntaxError(Exception):
    """A syntax error under SLL prediction: the input may still parse under full LL."""


class _RaiseSll(ErrorListener):
    def syntaxError(self, recognizer: Any, offendingSymbol: Any, line: int, column: int, msg: str,
                    e: Any) -> None:
        raise _SllSyntaxError(msg)


# Parse trees by LaTeX string. The tree depends on the text alone (not on the converter's
# options), and math-verify's second opinion, asked in the same worker, parses strings rftgym's
# own check has just parsed: a string that needs full-LL prediction costs 0.1-0.4 s each time
# (LL results are not kept in ANTLR's DFA cache). The converters only read the trees.
_TREE_CACHE_SIZE = 256
# A tree holds about 1.4 kB per input character: only answer-sized texts are kept, so the
# cache stays near 100 MB at worst under the worker's memory cap.
_TREE_MAX_CHARS = 300
_TREES: "OrderedDict[str, Any]" = OrderedDict()
_TREES_LOCK = threading.Lock()


class _Parsed:
    """Stands in for a parser whose ``math()`` tree is already known."""

    def __init__(self, tree: Any) -> None:
        self.tree = tree

    def math(self) -> Any:
        return self.tree


class _Parsing:
    """A parser whose ``math()`` tree, once built without error, is remembered for its text."""

    def __init__(self, parser: Any, text: str) -> None:
        self.parser, self.text = parser, text

    def math(self) -> Any:
        tree = self.parser.math()
        if len(self.text) > _TREE_MAX_CHARS:
            return tree
        with _TREES_LOCK:
            _TREES[self.text] = tree
            while len(_TREES) > _TREE_CACHE_SIZE:
                _TREES.popitem(last=False)
        return tree


class SafeLatex2Sympy(_Latex2Sympy):
    """latex2sympy2_extended's converter with number tokens read by ``safe_number``, and ANTLR's
    two-stage parsing: SLL prediction first, full LL only where SLL reports a syntax error.

    The pure-Python ANTLR runtime spends most of a parse in full-context (LL) prediction,
    which its DFA cache does not keep. ANTLR guarantees that an SLL parse without a syntax
    error gives the tree LL would give, so the verdicts are the same; measured on the 2,400
    answer strings of the benchmark and tests, SLL-first parses 6x faster and every
    successful SLL parse is identical to LL's (66 SLL syntax errors fall back to LL)."""

    _sll = False

    def parse_number(self, text: str) -> sympy.Rational:  # noqa: D102 - see class docstring
        return safe_number(text)

    def create_parser(self, latex_str: str) -> Any:  # noqa: D102 - see class docstring
        with _TREES_LOCK:
            tree = _TREES.get(latex_str)
        if tree is not None:
            return _Parsed(tree)
        parser = super().create_parser(latex_str)
        if self._sll:
            parser._interp.predictionMode = PredictionMode.SLL
            parser.removeErrorListeners()
            parser.addErrorListener(_RaiseSll())
        return _Parsing(parser, latex_str)

    def parse(self, latex_str: str) -> Any:  # noqa: D102 - see class docstring
        if comma_number_regex.match(latex_str):
            return safe_number(latex_str.strip())
        self._sll = True
        try:
            return super().parse(latex_str)
        except _SllSyntaxError:
            pass
        finally:
            self._sll = False
        return super().parse(latex_str)


def parse_latex(text: str) -> Any:
    """Parse LaTeX (normalised the way math-verify does: units, ``\\text{}``, ``\\frac12``)."""
    normalized = normalize_latex(text, NORMALIZATION)
    return SafeLatex2Sympy(config=CONVERSION).parse(normalized)


_LATEXISH = re.compile(r"[\\{}]")


def parse_math(text: str) -> Any:
    """Parse one answer (no percent sign) into a sympy object; raises on failure.

    Plain text, and LaTeX within ``math_latex_lite``'s subset, is tried with the restricted
    parser first (fast; it knows ``sqrt(3)``, ``**``), other LaTeX with latex2sympy2_extended
    first; each falls back to the other.
    """
    parts = split_top_level(text)
    if parts is not None and len(parts) > 1 and all(part.count("=") == 1 for part in parts):
        # "x=2, x=-3" lists two equations; read whole it is the chain x = {2, x} = -3, whose
        # last link states -3 alone, crediting a hedge
        return sympy.FiniteSet(*[parse_math(part.strip()) for part in parts])
    if _LATEXISH.search(text):
        lite = latex_to_plain(text)
        attempts = ((lambda _t: parse_plain(lite)), parse_latex) if lite is not None else (parse_latex, parse_plain)
    else:
        attempts = (parse_plain, parse_latex)
    error: Exception | None = None
    recursion: RecursionError | None = None
    for attempt in attempts:
        try:
            return attempt(text)
        except MemoryError:
            raise  # the worker's memory limit: report it as such, not as "unparsable"
        except RecursionError as exc:  # the other parser may not recurse as deep: try it
            error = recursion = exc
        except PlainParseError as exc:
            error = exc
        except Exception as exc:  # the ANTLR converter raises bare Exception on bad input
            error = exc
    if recursion is not None:
        raise recursion  # too deep for every parser: the worker reports "recursion limit"
    raise ValueError(f"cannot parse {text[:60]!r}: {error}")


@functools.lru_cache(maxsize=4096)
def parse_answer(text: str, percent: str = "both") -> list[Any]:
    """All readings of an answer: one object, or for ``28\\%`` the readings the percent policy
    allows (``"both"``: 28 and 0.28; ``"fraction"``: 0.28; ``"number"``: 28)."""
    text = strip_noise(text)
    body, is_percent = split_percent(text)
    value = parse_math(body)
    if not is_percent:
        return [value]
    if percent == "number":
        return [value]
    scaled = sympy.Mul(value, sympy.Rational(1, 100))
    return [scaled] if percent == "fraction" else [value, scaled]
