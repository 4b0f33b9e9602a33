"""Translate the everyday subset of LaTeX into the plain grammar of ``math_plain``.

latex2sympy2_extended's ANTLR runtime is pure Python and costs tens of milliseconds per
answer; most answers (``\\frac{3}{4}``, ``2\\sqrt{3}``, ``\\{1,2,3\\}``, ``x^{2}+1``,
``y_{1}=2x``) use a handful of commands that the restricted plain parser reads in well under
a millisecond. A subscript group of digits or one letter is spelled into the name
(``x_{1}`` -> ``x_1``), which ``plain`` names as latex2sympy2_extended does.
Anything outside that subset — or anything whose meaning could differ between the two
parsers (mixed numbers ``2\\frac{1}{2}``, ``\\sqrt[3]{}``, functions without parentheses) —
returns None and goes to latex2sympy2_extended.
"""
from __future__ import annotations

import re

_SIMPLE = {"\\pi": " pi ", "\\cdot": "*", "\\times": "*", "\\infty": " oo ", "\\{": "{", "\\}": "}"}
_FUNCS = {"\\sin": "sin", "\\cos": "cos", "\\tan": "tan", "\\ln": "ln", "\\exp": "exp"}
_COMMAND = re.compile(r"\\[A-Za-z]+|\\[{}]")
_MIXED_NUMBER = re.compile(r"\d\s*\\frac")
# A subscript group the plain grammar spells as part of a name: "x_{1}" -> "x_1", "a_{37}" -> "a_37".
_SUBSCRIPT = re.compile(r"\s*(\d+|[A-Za-z])\s*")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")


def _group(text: str, i: int) -> tuple[str, int] | None:
    """The ``{…}`` group starting at ``text[i]`` (after spaces) and the index after it."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{" and text[j - 1:j] != "\\":
            depth += 1
        elif text[j] == "}" and text[j - 1:j] != "\\":
            depth -= 1
            if depth == 0:
                return text[i + 1:j], j + 1
    return None


def latex_to_plain(text: str, depth: int = 0) -> str | None:
    """The plain-grammar spelling of ``text``, or None when it is outside the safe subset."""
    if depth > 40 or _MIXED_NUMBER.search(text) or "\\sqrt[" in text:
        return None
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            m = _COMMAND.match(text, i)
            if m is None:
                return None
            cmd = m.group(0)
            i = m.end()
            if cmd in _SIMPLE:
                out.append(_SIMPLE[cmd])
            elif cmd in ("\\frac", "\\sqrt") or cmd in _FUNCS:
                args = []
                for _ in range(2 if cmd == "\\frac" else 1):
                    group = _group(text, i)
                    if group is None:
                        if cmd in _FUNCS and text[i:i + 1] == "(":
                            break  # \sin(x): the parentheses follow as plain text
                        return None
                    inner = latex_to_plain(group[0], depth + 1)
                    if inner is None:
                        return None
                    args.append(inner)
                    i = group[1]
                if cmd == "\\frac":
                    out.append(f"(({args[0]})/({args[1]}))")
                elif cmd == "\\sqrt":
                    out.append(f"sqrt({args[0]})")
                else:
                    out.append(f" {_FUNCS[cmd]}({args[0]})" if args else f" {_FUNCS[cmd]}")
            else:
                return None
        elif c == "_" and text[i + 1:i + 2] == "{":
            group = _group(text, i + 1)
            sub = _SUBSCRIPT.fullmatch(group[0]) if group is not None else None
            if sub is None or _NAME_CHAR.match(text, group[1]):
                # "x_{n-1}": latex2sympy2_extended names it from the group's text; "x_{1}2":
                # the plain spelling "x_12" would run into the next character
                return None
            out.append("_" + sub.group(1))
            i = group[1]
        elif c == "{":
            out.append("(")
            i += 1
        elif c == "}":
            out.append(")")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)
