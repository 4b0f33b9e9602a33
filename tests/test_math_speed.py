"""The math checker's fast paths (issue 15's speed goal) give the verdicts the slow paths give.

- LaTeX is parsed with ANTLR's SLL prediction first and full LL only after an SLL syntax
  error: the trees must be LL's.
- Sums and products with a symbolic bound are compared at integer bounds.
- Answers equal up to the order of a product's factors are recognised without evaluation.
- ``verify()``'s shared pool starts one worker and grows only when every worker is busy.
"""
from __future__ import annotations

import threading

import pytest
import sympy
from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

from rftgym.rewards.math import reward as math_reward
from rftgym.rewards.math.check import CheckOptions, check_parsed
from rftgym.rewards.math.equiv import Context, _counters, _random_point, _shape, equivalent
from rftgym.rewards.math import parse as math_parse
from rftgym.rewards.math.parse import CONVERSION, SafeLatex2Sympy, parse_answer
from rftgym.rewards.math.pool import CheckerPool

# SLL parses these alone; powers and some equations need LL (SLL reports a syntax error).
_LATEX = ["\\frac{1}{2}", "\\sqrt{3}+1", "(1, 2]", "\\{1, 2, 3\\}", "x^2", "3x^2", "x^{2}-1", "\\frac{n^2+n}{2}",
          "a^2 + b = 0", "F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}", "y_{1}=-2 x^{2}+4 x+3", "x \\le 3",
          "[-1, -\\frac{1}{2}) \\cup (0, \\infty)", "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}",
          "2^6 3^5 5^4", "\\int_0^1 x dx", "1,000", "\\sin(x)=\\frac{42}{59}"]


class _LLOnly(SafeLatex2Sympy):
    """The same converter with ANTLR's default (full LL) prediction only."""

    def parse(self, latex_str):
        return _Latex2Sympy.parse(self, latex_str)

    def create_parser(self, latex_str):  # a fresh LL parse: neither SLL nor a remembered tree
        return _Latex2Sympy.create_parser(self, latex_str)


class _CountingParser(SafeLatex2Sympy):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.modes = []

    def create_parser(self, latex_str):
        self.modes.append("SLL" if self._sll else "LL")
        return super().create_parser(latex_str)


@pytest.mark.parametrize("text", _LATEX)
def test_sll_first_parse_gives_the_ll_tree(text) -> None:
    assert sympy.srepr(SafeLatex2Sympy(config=CONVERSION).parse(text)) == \
        sympy.srepr(_LLOnly(config=CONVERSION).parse(text))


def test_sll_first_falls_back_to_ll_only_on_a_syntax_error(monkeypatch) -> None:
    monkeypatch.setattr(math_parse, "_TREES", type(math_parse._TREES)())  # no tree remembered from other tests
    simple = _CountingParser(config=CONVERSION)
    simple.parse("\\frac{1}{2}")
    assert simple.modes == ["SLL"]
    power = _CountingParser(config=CONVERSION)
    assert power.parse("x^2") == sympy.Symbol("x") ** 2
    assert power.modes == ["SLL", "LL"]
    with pytest.raises(Exception):  # a real syntax error is still one
        _CountingParser(config=CONVERSION).parse("\\frac{1}{")


def test_sum_bounds_take_integer_values_at_the_random_points() -> None:
    expr = parse_answer("\\sum_{k=1}^{n} x^k")[0]
    n, x = sympy.Symbol("n"), sympy.Symbol("x")
    assert _counters(expr) == {n}
    import random
    for seed in range(20):
        point = _random_point(random.Random(seed), [n, x], {n})
        assert point[n].is_Integer and point[n] >= 2


@pytest.mark.parametrize("gold, pred, expected", [
    ("\\sum_{k=1}^{n} k", "\\frac{n(n+1)}{2}", True),
    ("\\sum_{k=1}^{n} k^2", "\\frac{n(n+1)(2n+1)}{6}", True),
    ("\\prod_{k=1}^{n} k", "n!", True),
    ("\\sum_{k=0}^{n-1} 2^k", "2^n-1", True),
    ("\\sum_{i=1}^{n} i", "\\sum_{k=1}^{n} k", True),
    ("\\sum_{k=1}^{n} k", "\\frac{n(n-1)}{2}", False),
    ("\\sum_{k=0}^{n-1} 2^k", "2^n", False),
    ("\\sum_{k=1}^{10} k", "55", True),
])
def test_sums_with_a_symbolic_bound(gold, pred, expected) -> None:
    ctx = Context()
    assert equivalent(parse_answer(gold)[0], parse_answer(pred)[0], ctx) is expected
    assert check_parsed(gold, pred, CheckOptions(engine="rftgym"))[0] is expected


def test_factor_order_is_recognised_without_evaluating() -> None:
    a = parse_answer("F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}")[0]
    b = parse_answer("F_n = \\sum_{k=0}^{n-1} F_{n-k-1} F_k")[0]
    assert a != b  # the parser keeps the written order of an unevaluated product
    assert _shape(a) == _shape(b)
    assert _shape(parse_answer("x y + 1")[0]) == _shape(parse_answer("1 + y x")[0])
    assert _shape(parse_answer("x - y")[0]) != _shape(parse_answer("y - x")[0])
    assert _shape(parse_answer("x^y")[0]) != _shape(parse_answer("y^x")[0])
    # the key keeps the binomial as written; a rebuild with evaluation would compute it in full
    hostile = sympy.Add(sympy.Symbol("x"), sympy.binomial(10 ** 8, 5 * 10 ** 7, evaluate=False), evaluate=False)
    key = _shape(hostile)
    assert key[0] == "Add" and any(part[0] == "binomial" for part, _ in key[1])


def test_pool_starts_some_workers_and_grows_when_all_are_busy() -> None:
    pool = CheckerPool(workers=2, start_workers=1, timeout=60)
    try:
        pool.start()
        assert len(pool._all) == 1
        opts = CheckOptions()
        assert pool.run([("x^2-1", "(x-1)(x+1)", opts)]) == [(True, "equivalent")]
        assert len(pool._all) == 1  # one check at a time never needs a second worker
        jobs = [(f"x^{i}-1", f"(x-1)(x+{i})", opts) for i in range(2, 8)]
        results = pool.run(jobs)
        assert len(pool._all) == 2
        assert [ok for ok, _ in results] == [False] * len(jobs)
    finally:
        pool.close()


def test_verify_shares_a_pool_that_starts_one_worker() -> None:
    math_reward.verify("x^2-1", "(x-1)(x+1)")
    shared = math_reward._shared_verifier()
    assert shared.pool.start_workers == 1 and shared.pool.size >= 1
    threads = [threading.Thread(target=math_reward.verify, args=(f"x^{i}", f"x^{i}+0*y")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(shared.pool._all) <= shared.pool.size
