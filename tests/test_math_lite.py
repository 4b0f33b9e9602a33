"""The restricted parsers (``latex_lite`` + ``plain``) read more answer shapes without ANTLR,
and each one to the object latex2sympy2_extended's ANTLR grammar builds: same Symbol names
(a name that differs between the two paths changes verdicts), same value.

Each fast shape is parsed both ways: through ``parse_math`` with ANTLR forbidden, and through
``parse_latex`` (ANTLR) alone.
"""
from __future__ import annotations

import pytest
import sympy

from rftgym.rewards.math import parse as math_parse
from rftgym.rewards.math.latex_lite import latex_to_plain
from rftgym.rewards.math.parse import SafeLatex2Sympy, parse_latex, parse_math
from rftgym.rewards.math.plain import PlainParseError, parse_plain


def _same(fast, slow) -> bool:
    """Equal as answers: the same names, and a zero difference (both sides of an equation)."""
    if isinstance(fast, sympy.Eq) or isinstance(slow, sympy.Eq):
        return (isinstance(fast, sympy.Eq) and isinstance(slow, sympy.Eq) and _same(fast.lhs, slow.lhs)
                and _same(fast.rhs, slow.rhs))
    if isinstance(fast, sympy.FiniteSet) and isinstance(slow, sympy.FiniteSet):
        return len(fast) == len(slow) and all(any(_same(a, b) for b in slow) for a in fast)
    if isinstance(fast, sympy.Set) or isinstance(slow, sympy.Set):
        return fast == slow
    names = {s.name for s in fast.free_symbols}
    return names == {s.name for s in slow.free_symbols} and sympy.simplify(fast - slow) == 0


def _fast_and_slow(text: str):
    """``parse_math(text)`` with ANTLR forbidden (it must not be needed), and with the restricted
    parsers forbidden (ANTLR's reading)."""
    def no_antlr(self, latex):
        raise AssertionError(f"ANTLR asked to parse {latex!r}")

    def no_plain(plain):
        raise PlainParseError("refused in this test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SafeLatex2Sympy, "parse", no_antlr)
        fast = parse_math(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(math_parse, "parse_plain", no_plain)
        slow = parse_math(text)
    return fast, slow


_SUBSCRIPTED = {
    "x_1": "x_1", "x_{1}": "x_1", "x_{ 1 }": "x_1", "X_N": "x_n", "x_{N}": "x_n", "F_n": "f_n", "x_a": "x_a",
    "x_12": "x_{12}", "a_{37}": "a_{37}", "x_{01}": "x_{01}", "i_1": "i_1", "d_{2}": "d_2",
}


@pytest.mark.parametrize("text, name", sorted(_SUBSCRIPTED.items()))
def test_subscripted_names_match_antlr(text, name) -> None:
    assert parse_latex(text) == sympy.Symbol(name)  # the name ANTLR gives (lower case, braces)
    lite = latex_to_plain(text) if "{" in text else text
    assert parse_plain(lite) == sympy.Symbol(name)


_SUBSCRIPT_SHAPES = [
    "y_{1}=-2 x^{2}+4 x+3", "y_2=3(x + 2)^2 - 2", "x_{1}=\\frac{1}{2}+\\frac{31\\sqrt{5}}{216}",
    "x_{1}=10^{\\frac{-5+\\sqrt{13}}{6}}", "a_{37} = 19", "a_3 = 2", "2x_1^2 + x_1", "x_{1}^{2}", "x_1 x_2",
    "x_{1}\\cdot x_{2}", "\\frac{x_1}{2}", "-x_{1}", "x_{1} = 5 - y_{1}", "\\sqrt{x_{1}}",
    "x_1 = 2, x_2 = 3", "\\{x_1, x_2\\}",
]


@pytest.mark.parametrize("text", _SUBSCRIPT_SHAPES)
def test_subscript_shapes_read_without_antlr_as_antlr_reads_them(text) -> None:
    fast, slow = _fast_and_slow(text)
    assert _same(fast, slow)


@pytest.mark.parametrize("text", [
    "x_{n-1}",  # the name is built from the group's text: left to ANTLR
    "x_{1}2",  # "x_12" would be another name
    "e_1", "E_{1}", "I_1",  # Euler's number and the imaginary unit take no subscript in ANTLR
    "f_1(x)",  # a function there
    "ab_1", "4210_7", "x_{1.5}", "\\pi_1",
])
def test_subscripts_the_restricted_parsers_leave_to_antlr(text) -> None:
    lite = latex_to_plain(text) if "{" in text or "\\" in text else text
    if lite is None:
        return
    with pytest.raises(ValueError):
        parse_plain(lite)


# -- parse trees shared between rftgym's own check and math-verify's second opinion ----------
_TREE_TEXTS = ["F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}", "V_{1}:V_{2}=11:21", "x \\in [-2,7]", "x^2 + 1 = 0",
               "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", "(-\\infty, -3] \\cup [2, \\infty)", "f(x) = 2x + 3"]


@pytest.mark.parametrize("text", _TREE_TEXTS)
def test_a_parsed_tree_is_reused_and_converts_as_a_fresh_parse(text, monkeypatch) -> None:
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

    monkeypatch.setattr(math_parse, "_TREES", type(math_parse._TREES)())
    own = SafeLatex2Sympy(config=math_parse.CONVERSION).parse(text)
    fresh_real = SafeLatex2Sympy(is_real=True, config=math_parse.CONVERSION).parse(text)  # a cached tree
    monkeypatch.setattr(math_parse, "_TREES", type(math_parse._TREES)())
    uncached_real = SafeLatex2Sympy(is_real=True, config=math_parse.CONVERSION).parse(text)
    assert own == SafeLatex2Sympy(config=math_parse.CONVERSION).parse(text)
    assert fresh_real == uncached_real  # math-verify's options (real symbols) on a reused tree

    def no_antlr(self, latex):
        raise AssertionError("parsed again")
    monkeypatch.setattr(_Latex2Sympy, "create_parser", no_antlr)
    assert SafeLatex2Sympy(config=math_parse.CONVERSION).parse(text) == own


def test_a_failed_parse_is_not_remembered(monkeypatch) -> None:
    monkeypatch.setattr(math_parse, "_TREES", type(math_parse._TREES)())
    for _ in range(2):
        with pytest.raises(Exception):
            SafeLatex2Sympy(config=math_parse.CONVERSION).parse("1 - \\frac{1}{")
    assert not math_parse._TREES


def test_only_answer_sized_trees_are_remembered(monkeypatch) -> None:
    monkeypatch.setattr(math_parse, "_TREES", type(math_parse._TREES)())
    long_text = "+".join(f"x_{{{i}}}" for i in range(math_parse._TREE_MAX_CHARS // 6 + 1))
    assert len(long_text) > math_parse._TREE_MAX_CHARS
    SafeLatex2Sympy(config=math_parse.CONVERSION).parse(long_text)
    SafeLatex2Sympy(config=math_parse.CONVERSION).parse("x_{12} + 1")
    assert list(math_parse._TREES) == ["x_{12} + 1"]
