"""math-verify as a second opinion, asked inside the worker when rftgym's own comparison says no.

math-verify (Hugging Face's checker, used by TRL and open-r1) knows relations, set algebra,
inequalities as intervals and many LaTeX forms that rftgym's parser does not. Its numeric
comparison rounds floats, which pays near misses between exact values (``\\frac{1}{2006!}``
vs ``\\frac{1}{2004!}``), so it is never asked when both answers are exact numbers that
rftgym has already compared exactly (see ``exact_numbers``).

It runs only here, in a killable worker process on its main thread, where its
``signal.alarm`` timeouts work. No text reaches ``eval``: math-verify is given LaTeX
extraction only, and its LaTeX converter is replaced by rftgym's ``SafeLatex2Sympy`` (the
ANTLR grammar rftgym's own LaTeX path uses, numbers read with ``int``).
"""
from __future__ import annotations

import re
from typing import Any

import sympy

from .equiv import polynomial_side
from .parse import SafeLatex2Sympy

# math-verify's own limits (whole seconds, alarm-based). They sit below the pool's hard
# limit so a slow case ends as "no" instead of costing a worker restart.
_PARSE_SECONDS = 1
_VERIFY_SECONDS = 2


def _wrap(text: str) -> str:
    # math-verify's documentation asks for LaTeX in math delimiters; a bare "x \neq 3" is
    # read as plain text otherwise.
    text = text.replace("!=", "\\neq ")
    return text if text.lstrip().startswith(("$", "\\[", "\\(")) else f"${text}$"


def _safe_latex2sympy(latex_str: str, variable_values: dict | None = None, is_real: Any = None,
                      convert_degrees: bool = False, normalization_config: Any = None,
                      conversion_config: Any = None) -> Any:
    """latex2sympy2_extended's ``latex2sympy`` with rftgym's converter, whose number tokens
    are read with ``int`` instead of ``sympy.Number(text)`` (which calls ``eval``)."""
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, normalize_latex

    converter = SafeLatex2Sympy(variable_values, is_real, convert_degrees, config=conversion_config or ConversionConfig())
    if normalization_config is not None:
        latex_str = normalize_latex(latex_str, normalization_config)
    return converter.parse(latex_str)


try:
    import math_verify.parser as _mv_parser
    from math_verify import LatexExtractionConfig, parse, verify

    _mv_parser.latex2sympy = _safe_latex2sympy  # the only converter math-verify's LaTeX path calls
    # LaTeX extraction only: math-verify's plain-expression extraction runs sympy's
    # parse_expr, which evaluates the text as Python.
    _EXTRACTION = [LatexExtractionConfig()]
except ImportError:  # an optional engine: the check falls back to rftgym's verdict alone
    _mv_parser = None


# Lower-case words outside LaTeX commands: units and text answers ("3 pm", "odd").
_WORDS = re.compile(r"(?<![\\A-Za-z])[a-z]{2,}(?![A-Za-z])")
_MATH_NAMES = frozenset({"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "pi", "sqrt", "frac",
                         "mod", "gcd", "lcm", "max", "min", "det", "arcsin", "arccos", "arctan", "and", "or"})


def _words(text: str) -> set[str]:
    return {w for w in _WORDS.findall(text) if w not in _MATH_NAMES}


def mathverify_equal(gold: str, pred: str) -> tuple[bool, str]:
    """``(verdict, reason)`` of math-verify on two extracted answers; False when it cannot
    parse either side (an unparsable answer is never paid), and not asked when the two name
    different words: its normalisation drops units and text, which would make ``3 pm`` equal
    ``3 am``."""
    if _mv_parser is None:
        return False, "math-verify not installed"
    if _words(gold) != _words(pred):
        return False, "different words"
    gold_parsed = parse(_wrap(gold), extraction_config=_EXTRACTION, parsing_timeout=_PARSE_SECONDS)
    pred_parsed = parse(_wrap(pred), extraction_config=_EXTRACTION, parsing_timeout=_PARSE_SECONDS)
    if not gold_parsed or not pred_parsed:
        return False, "math-verify: unparsable"
    ok = verify(gold_parsed, pred_parsed, timeout_seconds=_VERIFY_SECONDS)
    return bool(ok), "math-verify" if ok else "different"


def exact_numbers(values: list[Any]) -> bool:
    """Whether every parsed reading is an exact real number (no symbols, no floats, no
    structure): rftgym's exact comparison of two such answers is final."""
    return bool(values) and all(
        isinstance(v, sympy.Basic) and not isinstance(v, sympy.Float) and v.is_number
        and not v.has(sympy.Float) and bool(v.is_real) for v in values)


def _polynomial_reading(value: Any) -> bool:
    if isinstance(value, sympy.Eq):
        try:
            difference = value.lhs - value.rhs
        except TypeError:  # "x = \{1, 2\}": a symbol minus a set is no polynomial
            return False
        return polynomial_side(difference)
    # only sums: a product of bare names ("odd" read as o*d*d) may be a word math-verify reads as text
    return polynomial_side(value) and value.is_Add


def exact_polynomials(golds: list[Any], preds: list[Any]) -> bool:
    """One reading each, both exact polynomials (or polynomial equations) in the same names:
    rftgym's expand/cancel comparison of such answers is final, math-verify would only repeat it."""
    if len(golds) != 1 or len(preds) != 1:
        return False
    g, p = golds[0], preds[0]
    if isinstance(g, sympy.Eq) != isinstance(p, sympy.Eq):
        return False
    if not (_polynomial_reading(g) and _polynomial_reading(p)):
        return False
    return g.free_symbols == p.free_symbols
