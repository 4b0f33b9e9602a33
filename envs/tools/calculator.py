"""The built-in calculator tool: + − × ÷ and parentheses on integers and decimals, never ``eval``.

A small recursive-descent parser over exact rationals (``fractions.Fraction``): the model's
text is data, never code. Bounded: the expression's length, the nesting depth and the size of
every intermediate number are capped, so no input can make it run long or use much memory.
"""
from __future__ import annotations

import re
from fractions import Fraction

MAX_CHARS = 200
MAX_DEPTH = 32
MAX_DIGITS = 60  # a bound on |numerator| and denominator of every intermediate value

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(\*\*|[-+*/×÷()x]))")


class CalculatorError(ValueError):
    """The expression is not arithmetic the calculator accepts (the message says why)."""


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CalculatorError(f"unexpected character {text[pos]!r} at position {pos}")
        tok = m.group(1) or m.group(2)
        if tok == "**":
            raise CalculatorError("powers are not supported (use * repeatedly)")
        out.append({"×": "*", "x": "*", "÷": "/"}.get(tok, tok))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class _Parser:
    # expr := term (('+'|'-') term)* ; term := unary (('*'|'/') unary)* ; unary := '-' unary | atom
    # atom := number | '(' expr ')'
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.i, self.depth = tokens, 0, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise CalculatorError("the expression ends too early")
        self.i += 1
        return tok

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            value = _checked(value + self.term() if op == "+" else value - self.term())
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/"):
            op, rhs = self.take(), self.unary()
            if op == "/" and rhs == 0:
                raise CalculatorError("division by zero")
            value = _checked(value * rhs if op == "*" else value / rhs)
        return value

    def unary(self) -> Fraction:
        if self.peek() in ("-", "+"):
            sign = self.take()
            self._enter()
            value = self.unary()
            self.depth -= 1
            return -value if sign == "-" else value
        return self.atom()

    def atom(self) -> Fraction:
        tok = self.take()
        if tok == "(":
            self._enter()
            value = self.expr()
            if self.peek() != ")":
                raise CalculatorError("a '(' is never closed")
            self.take()
            self.depth -= 1
            return value
        if tok[0].isdigit() or tok[0] == ".":
            if len(tok) > MAX_DIGITS:
                raise CalculatorError(f"a number has more than {MAX_DIGITS} digits")
            return Fraction(tok)
        raise CalculatorError(f"expected a number or '(', got {tok!r}")

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalculatorError(f"nested more than {MAX_DEPTH} deep")


def _checked(value: Fraction) -> Fraction:
    if abs(value.numerator) >= 10 ** MAX_DIGITS or value.denominator >= 10 ** MAX_DIGITS:
        raise CalculatorError(f"a result has more than {MAX_DIGITS} digits")
    return value


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression (raises :class:`CalculatorError`)."""
    if not isinstance(expression, str):
        raise CalculatorError(f"expected an expression string, got {type(expression).__name__}")
    if len(expression) > MAX_CHARS:
        raise CalculatorError(f"the expression is longer than {MAX_CHARS} characters")
    parser = _Parser(_tokens(expression))
    if parser.peek() is None:
        raise CalculatorError("the expression is empty")
    value = parser.expr()
    if parser.peek() is not None:
        raise CalculatorError(f"unexpected {parser.peek()!r} after the expression")
    return value


def format_number(value: Fraction, places: int = 6) -> str:
    """An integer as is; otherwise a decimal rounded to ``places`` (trailing zeros dropped)."""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(round(value, places)):.{places}f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def calc(expression: str) -> str:
    """Evaluate an arithmetic expression exactly.

    Args:
        expression: Integers or decimals with +, -, *, / and parentheses, e.g. "(12+3)*4.5".
    """
    return format_number(evaluate(expression))
