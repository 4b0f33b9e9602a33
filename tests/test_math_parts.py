"""Unit tests of the math checker's parts: extraction, clean-up, guards, the safe parsers."""
from __future__ import annotations

import builtins
import importlib.util
from fractions import Fraction
from pathlib import Path

import pytest
import sympy

from rftgym.rewards.math.check import CheckOptions, check_parsed, precheck
from rftgym.rewards.math.extract import extract, unwrap_gold
from rftgym.rewards.math.guard import refuse_reason
import rftgym.rewards.math.second_opinion  # noqa: F401 - imported (dataclasses exec code) before eval is forbidden
from rftgym.rewards.math.latex_lite import latex_to_plain
from rftgym.rewards.math.parse import parse_answer, safe_number
from rftgym.rewards.math.plain import PlainParseError, parse_plain
from rftgym.rewards.math.text import clean_unicode, parse_plain_number

_CASES_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "math_cases.py"


@pytest.mark.parametrize("text, strategies, answer, strategy", [
    ("so \\boxed{\\frac{1}{\\sqrt{2}}} done", ("boxed",), "\\frac{1}{\\sqrt{2}}", "boxed"),
    ("first \\boxed{3} then \\boxed{4}", ("boxed",), "4", "boxed"),
    ("nested \\boxed{\\{1,\\{2\\}\\}}", ("boxed",), "\\{1,\\{2\\}\\}", "boxed"),
    ("\\fbox{7}", ("boxed",), "7", "boxed"), ("\\boxed 5 is it", ("boxed",), "5", "boxed"),
    ("work\n#### 1,234\n", ("hash",), "1,234", "hash"),
    ("So the final answer is $\\frac{3}{4}$.", ("answer_is",), "$\\frac{3}{4}$", "answer_is"),
    ("We get $x=2$ and then $y = 7$", ("dollar",), "y = 7", "dollar"),
    ("3 apples and 4 pears make 7", ("last_number",), "7", "last_number"),
    ("no box here, answer is 5", ("boxed", "answer_is"), "5", "answer_is"),
])
def test_extraction(text, strategies, answer, strategy) -> None:
    found = extract(text, strategies)
    assert found is not None and found.text == answer and found.strategy == strategy and not found.hedge


def test_extraction_edge_cases() -> None:
    assert extract("\\boxed{5} or \\boxed{6}").hedge
    assert not extract("\\boxed{5}. Checking again: \\boxed{5}").hedge
    assert not extract("First \\boxed{2}. Then doubling gives \\boxed{4}").hedge
    assert extract("unbalanced \\boxed{1 + {2}", ("boxed",)) is None
    assert extract("nothing at all", ("boxed", "hash", "last_number")) is None
    with pytest.raises(ValueError, match="unknown extraction strategy"):
        extract("x", ("nope",))
    long = "x " * 500_000 + "\\boxed{9}"
    assert extract(long).text == "9"
    assert unwrap_gold("Natalia sold ...\n#### 72") == "72"
    assert unwrap_gold("Hence $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert unwrap_gold(" \\frac{3}{4} ") == "\\frac{3}{4}"


@pytest.mark.parametrize("text, value, decimal", [
    ("42", 42, False), ("-3.5", Fraction(-7, 2), True), ("7,425,000", 7425000, False), ("1,22", Fraction(122, 100), True),
    ("1,220", 1220, False), ("3/4", Fraction(3, 4), False), ("-\\frac{5}{2}", Fraction(-5, 2), False), ("1e3", 1000, True),
    (".5", Fraction(1, 2), True), ("12 345", 12345, False),
])
def test_plain_numbers(text, value, decimal) -> None:
    number = parse_plain_number(text)
    assert number is not None and number.value == value and number.decimal == decimal


@pytest.mark.parametrize("text", ["x", "1/0", "1,2,3", "2^8", "\\sqrt{2}", "", "1" * 500])
def test_not_plain_numbers(text) -> None:
    assert parse_plain_number(text) is None


def test_unicode_cleanup() -> None:
    assert clean_unicode("１２\x00３") == "123"
    assert clean_unicode("−5") == "-5"
    assert clean_unicode("\u200b7\ufeff") == "7"
    assert "\\pi" in clean_unicode("2π")


@pytest.mark.parametrize("text, reason", [
    ("9^9^9^9", "power tower"), ("2**2**2**2", "power tower"), ("1000000!", "huge factorial"),
    ("10^{100000}", "huge power"), ("x^{1234567}", "huge power"), ("(" * 100 + "1" + ")" * 100, "nesting too deep"),
    ("1" * 3000, "too long"),
])
def test_guards_refuse(text, reason) -> None:
    assert refuse_reason(text) == reason


@pytest.mark.parametrize("text", ["2^{10}", "\\frac{1}{2004!}", "x^2+1", "10^{6}", "e^{i\\pi}", "5!"])
def test_guards_allow(text) -> None:
    assert refuse_reason(text) is None


def test_plain_parser_builds_sympy_without_eval() -> None:
    x = sympy.Symbol("x")
    assert parse_plain("2*sqrt(3)/4") == sympy.sqrt(3) / 2
    assert parse_plain("x**2 - 1") == x**2 - 1
    assert parse_plain("2x + 3(x+1)") == 5 * x + 3
    assert parse_plain("0.25") == sympy.Rational(1, 4)
    assert parse_plain("(1, 2, 3)") == sympy.Tuple(1, 2, 3)
    assert parse_plain("[0, 1)") == sympy.Interval.Ropen(0, 1)
    assert parse_plain("{1, 2}") == sympy.FiniteSet(1, 2)
    for bad in ["__import__('os')", "os.system('ls')", "lambda: 1", "1 +", "a[0]", "(" * 100 + "1" + ")" * 100]:
        with pytest.raises(PlainParseError):
            parse_plain(bad)


def test_latex_lite_subset() -> None:
    assert latex_to_plain("\\frac{3}{4}") == "((3)/(4))"
    assert latex_to_plain("2\\sqrt{3}") == "2sqrt(3)"
    assert latex_to_plain("2\\frac{1}{2}") is None  # mixed number: latex2sympy's reading
    assert latex_to_plain("\\sqrt[3]{8}") is None
    assert latex_to_plain("\\int_0^1 x dx") is None


def test_safe_number_is_exact() -> None:
    assert safe_number("0.1") == sympy.Rational(1, 10)
    assert safe_number("1,234.5") == sympy.Rational(2469, 2)
    assert safe_number("2.5e-3") == sympy.Rational(1, 400)
    with pytest.raises(ValueError):
        safe_number("1+1")


def test_parse_percent_policies() -> None:
    assert parse_answer("28\\%", "both") == [28, sympy.Rational(7, 25)]
    assert parse_answer("28\\%", "fraction") == [sympy.Rational(7, 25)]
    assert parse_answer("28\\%", "number") == [28]
    assert precheck("28\\%", "0.28", CheckOptions(percent="number")).verdict is False
    assert precheck("28\\%", "28", CheckOptions(percent="fraction")).verdict is False


def test_comma_decimal_configurable() -> None:
    assert precheck("1.22", "1,22", CheckOptions()).verdict is True
    assert precheck("1.22", "1,22", CheckOptions(comma_decimal=False)).verdict is not True


def test_checker_never_evaluates_text(monkeypatch) -> None:
    """Every labelled case through the parse-and-compare path with eval/exec/sympify removed."""
    spec = importlib.util.spec_from_file_location("rftgym_math_cases_parts", _CASES_FILE)
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)  # type: ignore[union-attr]

    real_eval, real_exec = builtins.eval, builtins.exec

    def forbidden(*args, **kwargs):
        raise AssertionError(f"eval-like call on {args[:1]!r}")

    def no_text_eval(source, *args, **kwargs):  # imports exec code objects; text is what matters
        if isinstance(source, (str, bytes)):
            forbidden(source)
        return real_eval(source, *args, **kwargs)

    def no_text_exec(source, *args, **kwargs):
        if isinstance(source, (str, bytes)):
            forbidden(source)
        return real_exec(source, *args, **kwargs)

    import sympy.core.numbers
    import sympy.parsing.sympy_parser

    import rftgym.rewards.math.equiv  # noqa: F401 - imported before the patch

    monkeypatch.setattr(builtins, "eval", no_text_eval)
    monkeypatch.setattr(builtins, "exec", no_text_exec)
    monkeypatch.setattr(sympy.parsing.sympy_parser, "parse_expr", forbidden)
    monkeypatch.setattr(sympy.core.numbers, "sympify", forbidden, raising=False)
    import math_verify.parser

    monkeypatch.setattr(math_verify.parser, "parse_expr", forbidden)  # its plain-text extraction
    opts = CheckOptions()
    parse_answer.cache_clear()
    for case in cases.ALL_CASES[::3]:
        prepared = precheck(case.gold, case.prediction, opts)
        verdict, reason = check_parsed(prepared.gold, prepared.pred, opts)
        assert "AssertionError" not in reason, (case, reason)
    parse_answer.cache_clear()
