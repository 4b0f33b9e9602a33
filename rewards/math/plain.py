"""A restricted parser for plain-text math (``2*sqrt(3)/4``, ``x^2 - 1``, ``(1, 2)``).

It builds sympy objects directly from a fixed grammar — numbers, ``+ - * / ^ **``, ``!``,
parentheses, a whitelist of functions and constants, names as Symbols — and never calls
``eval``, ``sympify`` or ``parse_expr`` (which evaluate Python), so model text cannot run code.
Length and depth are bounded.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import sympy

from .text import split_top_level

MAX_LENGTH = 2000
MAX_DEPTH = 60

_TOKEN = re.compile(r"\s*(?:(\d+\.\d*|\.\d+|\d+)|([A-Za-z_][A-Za-z_0-9]*)|(\*\*|[-+*/^(),!{}\[\]=]))")

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc, "asin": sympy.asin,
    "acos": sympy.acos, "atan": sympy.atan, "arcsin": sympy.asin, "arccos": sympy.acos,
    "arctan": sympy.atan, "log": sympy.log, "ln": sympy.log, "exp": sympy.exp, "abs": sympy.Abs,
}
_CONSTANTS: dict[str, Any] = {"pi": sympy.pi, "e": sympy.E, "oo": sympy.oo, "inf": sympy.oo,
                              "infinity": sympy.oo, "infty": sympy.oo}


# One letter with a subscript of digits or one letter: "x_1", "a_12", "F_n". Named as
# latex2sympy2_extended names ``x_{1}``/``a_{12}``/``F_{n}`` (lower case; braces kept only
# around a subscript of two characters or more), so both parsers give the same Symbol.
# e, E (Euler's number) and I (the imaginary unit) take no subscript there: left to it.
_SUBSCRIPTED = re.compile(r"([A-DF-HJ-Za-df-z])_(\d+|[A-Za-z])")


def subscripted_name(base: str, subscript: str) -> str:
    """latex2sympy2_extended's Symbol name for ``base_{subscript}``."""
    sub = subscript.lower()
    return f"{base.lower()}_{sub}" if len(sub) == 1 else f"{base.lower()}_{{{sub}}}"


class PlainParseError(ValueError):
    """The text is not in the plain-math grammar."""


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise PlainParseError(f"unexpected character {text[pos:pos + 1]!r}")
        pos = m.end()
        if m.group(1) is not None:
            tokens.append(("num", m.group(1)))
        elif m.group(2) is not None:
            tokens.append(("name", m.group(2)))
        else:
            tokens.append(("op", m.group(3)))
    return tokens


def _number(text: str) -> sympy.Expr:
    # Exact rationals from decimal text: "0.25" -> 1/4, so 1/4 and 0.25 compare exactly.
    if "." in text:
        whole, frac = text.split(".")
        return sympy.Rational(int((whole or "0") + frac), 10 ** len(frac)) if frac else sympy.Integer(int(whole))
    return sympy.Integer(int(text))


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise PlainParseError(f"expected {value or 'a token'}")
        self.i += 1
        return tok

    def at(self, *values: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] in values

    def top(self) -> Any:
        """A comma list (tuple/set), an equation chain (last value kept by the caller), or one expression."""
        parts = [self.sequence()]
        while self.at("="):
            self.take("=")
            parts.append(self.sequence())
        if self.peek() is not None:
            raise PlainParseError("trailing input")
        if len(parts) == 1:
            return parts[0]
        return sympy.Eq(parts[-2], parts[-1], evaluate=False)

    def sequence(self) -> Any:
        items = [self.expr()]
        while self.at(","):
            self.take(",")
            items.append(self.expr())
        return items[0] if len(items) == 1 else sympy.FiniteSet(*items)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise PlainParseError("nesting too deep")

    def expr(self) -> Any:
        self.enter()
        left = self.term()
        while self.at("+", "-"):
            op = self.take()[1]
            right = self.term()
            left = left + right if op == "+" else left - right
        self.depth -= 1
        return left

    def term(self) -> Any:
        left = self.unary()
        while True:
            if self.at("*", "/"):
                op = self.take()[1]
                right = self.unary()
                left = left * right if op == "*" else left / right
            elif self.peek() is not None and (self.peek()[0] in ("num", "name") or self.at("(")):
                if self.peek()[0] == "num" and self.tokens[self.i - 1][0] == "num":
                    # "8 2" or "5 6 7" is a list or a typo, never a product: reading it as 16
                    # credited a gold of 16. (2x, 3(4), 2 sqrt(3) still multiply.)
                    raise PlainParseError("two numbers side by side")
                left = left * self.power()  # implicit multiplication: 2x, 3(x+1), 2sqrt(3)
            else:
                return left

    def unary(self) -> Any:
        if self.at("-"):
            self.take()
            self.enter()
            value = -self.unary()
            self.depth -= 1
            return value
        if self.at("+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Any:
        base = self.postfix()
        if self.at("^", "**"):
            self.take()
            self.enter()
            exponent = self.unary()
            self.depth -= 1
            return sympy.Pow(base, exponent)
        return base

    def postfix(self) -> Any:
        value = self.atom()
        while self.at("!"):
            self.take()
            value = sympy.factorial(value)
        return value

    def atom(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise PlainParseError("unexpected end")
        kind, text = tok
        if kind == "num":
            self.take()
            return _number(text)
        if kind == "name":
            self.take()
            low = text.lower()
            if low in _FUNCTIONS and self.at("("):
                self.take("(")
                self.enter()
                arg = self.expr()
                self.depth -= 1
                self.take(")")
                return _FUNCTIONS[low](arg)
            if low in _CONSTANTS:
                return _CONSTANTS[low]
            sub = _SUBSCRIPTED.fullmatch(text)
            if sub is not None and not self.at("("):  # "f_1(x)" is a function there: not read here
                return sympy.Symbol(subscripted_name(sub.group(1), sub.group(2)))
            if len(text) > 1 and not text.isalpha():
                raise PlainParseError(f"unknown name {text!r}")
            if len(text) > 3:
                raise PlainParseError(f"unknown word {text!r}")  # prose, not math
            # "ab" is a product of names, as in LaTeX (where it would be the same)
            # names are lower-cased, as latex2sympy2_extended does, so both parsers agree
            return sympy.Mul(*[sympy.Symbol(c.lower()) for c in text]) if text.isalpha() else sympy.Symbol(text.lower())
        if text in ("(", "["):
            close = ")" if text == "(" else "]"
            self.take()
            self.enter()
            inner = self.sequence()
            self.depth -= 1
            self.take(close)
            if isinstance(inner, sympy.FiniteSet):
                raise PlainParseError("tuple inside an expression")
            return inner
        raise PlainParseError(f"unexpected {text!r}")


def parse_plain(text: str) -> Any:
    """Parse plain-text math into a sympy object; raises PlainParseError when it is not one.

    A top-level comma list in parentheses is a Tuple, in braces a FiniteSet, bare a FiniteSet.
    """
    if len(text) > MAX_LENGTH:
        raise PlainParseError("too long")
    stripped = text.strip()
    opener = stripped[:1]
    if opener == "{" and stripped.endswith("}") and split_top_level(stripped[1:-1]) is not None:
        inner = stripped[1:-1]
        return sympy.FiniteSet(*[parse_plain(part) for part in split_top_level(inner) or []]) if inner.strip() \
            else sympy.EmptySet
    if stripped and opener in "({[" and stripped[-1:] in ")}]" and "," in stripped:
        parts = split_top_level(stripped[1:-1])
        if parts is not None and len(parts) > 1:
            items = [parse_plain(part) for part in parts]
            if opener == "{":
                return sympy.FiniteSet(*items)
            if len(items) == 2 and (opener == "[" or stripped[-1] == "]"):
                # [a, b], [a, b), (a, b]: an interval; (a, b) stays a tuple (compared as either)
                return sympy.Interval(items[0], items[1], opener == "(", stripped[-1] == ")")
            return sympy.Tuple(*items)
    parser = _Parser(_tokenize(stripped))
    return parser.top()
