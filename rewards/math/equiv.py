"""Equivalence of two parsed answers: exact first, then symbolic, then numeric.

Numbers: exact rationals compare exactly (``1/2004!`` vs ``1/2006!`` differ, however small);
a decimal approximates a gold value only when that value has no finite decimal expansion,
within a relative tolerance. Undefined values (``zoo``, ``nan``) never match. Structures
(sets, tuples, intervals, matrices, equations, inequalities) compare part by part.
Runs inside the time- and memory-limited worker.
"""
from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction
from typing import Any

import sympy
from sympy.core.relational import Relational

from .text import stated_places

_PRECISION = 60
_IDENTICAL = sympy.Float("1e-40", _PRECISION)  # numerically identical at 60 digits


class Context:
    """Per-comparison options: the relative tolerance and whether each side was written with a
    decimal point (a decimal may approximate a non-terminating value)."""

    def __init__(self, rel_tol: float = 1e-6, gold_decimal: bool = False, pred_decimal: bool = False) -> None:
        self.rel_tol = sympy.Float(rel_tol, _PRECISION) * sympy.Float("1.000001", _PRECISION)
        self.gold_decimal = gold_decimal
        self.pred_decimal = pred_decimal


def _shape(expr: Any) -> Any:
    """A hashable key of ``expr`` in which the order of a sum's terms or a product's factors
    does not count. The LaTeX parser builds products unevaluated, so ``F_k F_{n-k-1}`` and
    ``F_{n-k-1} F_k`` differ as trees; nothing is evaluated here (rebuilding the tree with
    sympy's evaluation would compute ``\\binom{10^8}{5 \\cdot 10^7}`` in full)."""
    # Every key is (class name, ...): comparing keys never hands a class or a tuple to
    # sympy's ``__eq__`` (which would try to sympify it).
    if not isinstance(expr, sympy.Basic) or not expr.args:
        return "", expr
    parts = tuple(_shape(a) for a in expr.args)
    name = type(expr).__name__
    if isinstance(expr, (sympy.Add, sympy.Mul)) and expr.is_commutative:
        return name, frozenset(Counter(parts).items())
    return name, parts


def _terminating(value: Any) -> bool:
    if not isinstance(value, sympy.Rational):
        return False
    d = int(value.q)
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _undefined(expr: Any) -> bool:
    return bool(expr.has(sympy.zoo, sympy.nan)) if isinstance(expr, sympy.Basic) else False


def strip_unevaluated(obj: Any) -> Any:
    """Replace ``UnevaluatedExpr(x)`` (latex2sympy's percent marker) by ``x``."""
    if isinstance(obj, sympy.Basic) and obj.has(sympy.UnevaluatedExpr):
        return obj.replace(lambda e: isinstance(e, sympy.UnevaluatedExpr), lambda e: e.args[0])
    return obj


def _evaluates(expr: Any) -> bool:
    value = sympy.N(expr, _PRECISION)
    return bool(value.is_number and value.is_comparable)


def _close(a: Any, b: Any, tol: Any) -> bool:
    va, vb = sympy.N(a, _PRECISION), sympy.N(b, _PRECISION)
    if not (va.is_number and vb.is_number) or va.has(sympy.I) != vb.has(sympy.I):
        return False
    if not (va.is_finite and vb.is_finite):
        return bool(va == vb)
    scale = max(abs(va), abs(vb))
    diff = abs(va - vb)
    if scale == 0:
        return diff == 0
    return bool(diff <= tol * scale)


def _as_written(value: Any) -> Any:
    """A float as the decimal it was written as (``0.6`` is exactly ``3/5``; sympy's binary
    Float is not); anything else unchanged."""
    if isinstance(value, sympy.Float):
        written = repr(float(value))
        if "e" not in written and "n" not in written:
            return sympy.Rational(written)
    return value


def _within_stated_places(gold: Any, pred: Any) -> bool:
    """A decimal within one unit of the last place it states of the other, non-terminating
    value: ``0.3333`` for ``1/3`` (see ``text.stated_places``)."""
    a, b = _as_written(gold), _as_written(pred)
    decimal, exact = (b, a) if _terminating(b) and not _terminating(a) else (a, b)
    if not _terminating(decimal) or not exact.is_number:
        return False
    places = stated_places(Fraction(int(decimal.p), int(decimal.q)))
    if places is None:
        return False
    return bool(abs(sympy.N(exact - decimal, _PRECISION)) < sympy.Rational(1, 10 ** places))


def scalars_equal(gold: Any, pred: Any, ctx: Context) -> bool:
    """Two scalar expressions: exact, then symbolic, then numeric."""
    if not isinstance(gold, sympy.Expr) or not isinstance(pred, sympy.Expr):
        return False
    if _undefined(gold) or _undefined(pred):
        return False  # 1/0 vs 2/0, 12:00 vs 1:00 (both read as zoo) never match
    if gold == pred or _as_written(gold) == _as_written(pred) or _shape(gold) == _shape(pred):
        return True
    approx = (ctx.pred_decimal and not _terminating(gold)) or (ctx.gold_decimal and not _terminating(pred))
    if isinstance(gold, sympy.Rational) and isinstance(pred, sympy.Rational) and not approx:
        return False
    free = gold.free_symbols | pred.free_symbols
    if not free:
        if approx:
            return _close(gold, pred, ctx.rel_tol) or _within_stated_places(gold, pred)
        if _close(gold, pred, _IDENTICAL):
            return True
        if _evaluates(gold) and _evaluates(pred):
            return False  # two real numbers that differ at 60 digits are different
        return sympy.simplify(gold - pred) == 0
    if bool(gold.free_symbols) != bool(pred.free_symbols):
        # a number vs an expression in x: equal only if the expression is constant
        expr = pred if pred.free_symbols else gold
        if not _constant_at_points(expr, sorted(free, key=str)):
            return False
    # Random points first: a disagreement disproves equality at once; agreement to 60 digits
    # at three rational points, or a symbolic proof, establishes it.
    agree = _agree_at_points(gold, pred, sorted(free, key=str))
    if agree is not None:
        return agree
    diff = gold - pred
    return bool(sympy.expand(diff) == 0 or sympy.simplify(diff) == 0)


def _counters(expr: Any) -> set[Any]:
    """Names in the bounds of a sum or product (``n`` in ``\\sum_{k=1}^{n} k``): they count
    terms, so they take integer values. At a fractional ``n`` sympy would evaluate the sum by
    Euler-Maclaurin, which took the whole own-check budget and has no meaning for the answer."""
    names: set[Any] = set()
    for node in expr.atoms(sympy.Sum, sympy.Product):
        for limit in node.limits:
            for bound in limit[1:]:
                names |= bound.free_symbols
    return names


def _random_point(rng: random.Random, symbols: list[Any], counters: set[Any]) -> dict[Any, Any]:
    """Random rationals for the names; small positive integers for the term counters."""
    return {s: sympy.Integer(rng.randint(2, 12)) if s in counters
            else sympy.Rational(rng.randint(-97, 97), rng.randint(1, 13)) for s in symbols}


def _constant_at_points(expr: Any, symbols: list[Any]) -> bool:
    """False when ``expr`` provably varies: two random points give different values."""
    rng = random.Random(4321)
    values = []
    counters = _counters(expr)
    for _ in range(6):
        point = _random_point(rng, symbols, counters)
        try:
            value = sympy.N(expr.subs(point), _PRECISION)
        except (ZeroDivisionError, ValueError, TypeError):
            continue
        if value.is_number and value.is_finite:
            values.append(value)
        if len(values) == 2:
            return _close(values[0], values[1], _IDENTICAL)
    return True


def _agree_at_points(gold: Any, pred: Any, symbols: list[Any]) -> bool | None:
    """Numeric identity check at random rational points: False at the first disagreement,
    True after three agreements, None when too few points could be evaluated."""
    rng = random.Random(1234)
    tried = 0
    counters = _counters(gold) | _counters(pred)
    for _ in range(8):
        point = _random_point(rng, symbols, counters)
        try:
            ga, pa = sympy.N(gold.subs(point), _PRECISION), sympy.N(pred.subs(point), _PRECISION)
        except (ZeroDivisionError, ValueError, TypeError):
            continue
        if not (ga.is_finite and pa.is_finite):
            continue
        if not _close(ga, pa, _IDENTICAL):
            return False
        tried += 1
        if tried >= 3:
            return True
    return None


def _chain_last(obj: Any) -> Any:
    """``x = 5+5+1 = 7 = 11`` (an And of equations) -> its last equation."""
    if isinstance(obj, sympy.And):
        args = getattr(obj, "_unsorted_args", None) or obj.args
        rels = [a for a in args if isinstance(a, Relational)]
        if rels:
            return rels[-1]
    return obj


def _value(obj: Any) -> Any:
    """The answer an equation states: its right-hand side (``x = 11`` -> 11)."""
    obj = _chain_last(obj)
    if isinstance(obj, sympy.Eq):
        return obj.rhs
    return obj


def _relations_equal(gold: Relational, pred: Relational, ctx: Context) -> bool:
    if type(gold) is type(pred):
        if scalars_equal(gold.lhs, pred.lhs, ctx) and scalars_equal(gold.rhs, pred.rhs, ctx):
            return True
        if isinstance(gold, (sympy.Eq, sympy.Ne)):
            if scalars_equal(gold.lhs, pred.rhs, ctx) and scalars_equal(gold.rhs, pred.lhs, ctx):
                return True
            return scalars_equal(gold.lhs - gold.rhs, pred.lhs - pred.rhs, ctx) or \
                scalars_equal(gold.lhs - gold.rhs, pred.rhs - pred.lhs, ctx) or \
                (isinstance(gold, sympy.Eq) and scaled_equations(gold, pred))
        return False
    if gold.reversed.__class__ is type(pred):
        return _relations_equal(gold.reversed, pred, ctx)
    return False


def polynomial_side(expr: Any) -> bool:
    """An exact polynomial in its free symbols (no floats, no functions), with at least one."""
    return (isinstance(expr, sympy.Expr) and bool(expr.free_symbols) and not expr.has(sympy.Float)
            and expr.is_polynomial(*expr.free_symbols))


def scaled_equations(gold: sympy.Eq, pred: sympy.Eq) -> bool:
    """Polynomial equations with the same solutions because one is the other rearranged and
    times a nonzero constant: ``2x+4y-3=0`` and ``y=-\\frac12x+\\frac34``."""
    a, b = gold.lhs - gold.rhs, pred.lhs - pred.rhs
    if not (polynomial_side(a) and polynomial_side(b)) or a.free_symbols != b.free_symbols:
        return False
    ratio = sympy.cancel(a / b)
    return bool(ratio.is_number and ratio.is_finite and ratio != 0)


def _elements_match(gold: list[Any], pred: list[Any], ctx: Context, ordered: bool) -> bool:
    if len(gold) != len(pred):
        return False
    if ordered:
        return all(equivalent(g, p, ctx) for g, p in zip(gold, pred))
    remaining = list(pred)
    for g in gold:
        for k, p in enumerate(remaining):
            if equivalent(g, p, ctx):
                del remaining[k]
                break
        else:
            return False
    return True


def _as_pair(obj: Any) -> list[Any] | None:
    """An open interval ``(a, b)`` is also the ordered pair ``(a, b)``."""
    if isinstance(obj, sympy.Tuple) and len(obj) == 2:
        return list(obj)
    if isinstance(obj, sympy.Interval) and obj.left_open and obj.right_open:
        return [obj.start, obj.end]
    return None


def equivalent(gold: Any, pred: Any, ctx: Context) -> bool:
    """True when ``pred`` states the same answer as ``gold``."""
    gold, pred = strip_unevaluated(gold), strip_unevaluated(pred)
    gold, pred = _chain_last(gold), _chain_last(pred)
    if isinstance(gold, Relational) and isinstance(pred, Relational):
        if _relations_equal(gold, pred, ctx):
            return True
        if isinstance(gold, sympy.Eq) and isinstance(pred, sympy.Eq) and gold.lhs.is_Symbol and pred.lhs.is_Symbol:
            return equivalent(gold.rhs, pred.rhs, ctx)
        return False
    if isinstance(gold, sympy.Eq) and not isinstance(pred, Relational):
        # "y = 2x + 3" vs "2x + 3": only when the gold's left side is a bare name
        return gold.lhs.is_Symbol and equivalent(gold.rhs, pred, ctx)
    if isinstance(pred, sympy.Eq):
        return equivalent(gold, _value(pred), ctx)
    if isinstance(gold, Relational) or isinstance(pred, Relational):
        rel, other = (gold, pred) if isinstance(gold, Relational) else (pred, gold)
        if isinstance(other, sympy.Set) and len(rel.free_symbols) == 1:
            as_set = rel.as_set()
            return equivalent(as_set, other, ctx) if rel is gold else equivalent(other, as_set, ctx)
        return False
    pair_g, pair_p = _as_pair(gold), _as_pair(pred)
    if pair_g is not None and pair_p is not None:
        return _elements_match(pair_g, pair_p, ctx, ordered=True)
    if isinstance(gold, sympy.Interval) and isinstance(pred, sympy.Interval):
        return (gold.left_open == pred.left_open and gold.right_open == pred.right_open
                and equivalent(gold.start, pred.start, ctx) and equivalent(gold.end, pred.end, ctx))
    if isinstance(gold, sympy.Union) and isinstance(pred, sympy.Union):
        return _elements_match(list(gold.args), list(pred.args), ctx, ordered=False)
    if isinstance(gold, sympy.FiniteSet) and isinstance(pred, sympy.FiniteSet):
        return _elements_match(list(gold.args), list(pred.args), ctx, ordered=False)
    if isinstance(gold, sympy.Tuple) and isinstance(pred, sympy.Tuple):
        return _elements_match(list(gold.args), list(pred.args), ctx, ordered=True)
    if isinstance(gold, sympy.MatrixBase) or isinstance(pred, sympy.MatrixBase):
        if not (isinstance(gold, sympy.MatrixBase) and isinstance(pred, sympy.MatrixBase)):
            return False
        if gold.shape != pred.shape:
            return False
        return _elements_match(list(gold), list(pred), ctx, ordered=True)
    # A one-element set answers a single value: {5} vs 5.
    if isinstance(gold, sympy.FiniteSet) and len(gold) == 1 and isinstance(pred, sympy.Expr):
        return equivalent(gold.args[0], pred, ctx)
    if isinstance(pred, sympy.FiniteSet) and len(pred) == 1 and isinstance(gold, sympy.Expr):
        return equivalent(gold, pred.args[0], ctx)
    if isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr):
        return scalars_equal(gold, pred, ctx)
    return False
