"""Labelled (gold, prediction, expected) cases for the math checker, by category.

Shared by ``tests/test_math_*.py`` and ``benchmarks/math_reward.py``. Gold answers are bare,
as datasets store them; predictions are bare answers or full worked solutions. ``expected``
is the verdict a careful human grader gives.
"""
from __future__ import annotations

from typing import NamedTuple


class Case(NamedTuple):
    category: str
    gold: str
    prediction: str
    expected: bool


def _cases(category: str, rows: list[tuple[str, str, bool]]) -> list[Case]:
    return [Case(category, g, p, e) for g, p, e in rows]


NUMBERS = _cases("numbers", [
    ("42", "42", True), ("42", "42.0", True), ("42", "+42", True), ("42", "43", False),
    ("-7", "-7", True), ("-7", "7", False), ("0", "0", True), ("0", "-0", True),
    ("3.14", "3.14", True), ("3.14", "3.140", True), ("3.14", "3.15", False),
    ("1000", "1,000", True), ("7425000", "7,425,000", True), ("7,425,000", "7425000", True),
    ("1234567", "1,234,567", True), ("1234567", "1,234,568", False),
    ("1.22", "1,22", True), ("0.5", ".5", True), ("12", "12.", True),
    ("1000000", "1000001", False), ("1000000", "10^6", True), ("100", "10^2", True),
    ("2.5", "2.50001", False), ("2.5", "5/2", True), ("0.125", "1/8", True),
    ("5", "５", True), ("12", "１２", True), ("-3", "−3", True),
    ("1e3", "1000", True), ("\\$5.00", "5", True), ("5", "\\$5", True),
    ("20", "20 \\text{ dollars}", True), ("10", "10\\text{ cm}", True), ("15", "15 \\mbox{ inches}", True),
    ("90", "90^\\circ", True), ("45", "45^{\\circ}", True), ("30", "30°", True),
    ("3", "3.0000", True), ("17", "17.5", False), ("256", "2^8", True), ("256", "2^{8}", True),
    ("12", "twelve", False), ("1", "1.0", True), ("99", "100", False), ("13", "31", False),
])

FRACTIONS = _cases("fractions", [
    ("\\frac{3}{4}", "\\frac{3}{4}", True), ("\\frac{3}{4}", "0.75", True), ("\\frac{3}{4}", "3/4", True),
    ("\\frac{3}{4}", "\\dfrac{3}{4}", True), ("\\frac{3}{4}", "\\tfrac{3}{4}", True), ("\\frac{3}{4}", "\\frac{6}{8}", True),
    ("\\frac{3}{4}", "\\frac{4}{3}", False), ("\\frac{3}{4}", "0.7", False), ("\\frac12", "\\frac{1}{2}", True),
    ("\\frac12", "0.5", True), ("\\frac{1}{2}", "\\frac12", True), ("\\frac{1}{3}", "0.333333", True),
    ("\\frac{1}{3}", "0.33", False), ("\\frac{2}{3}", "0.666667", True), ("\\frac{2}{3}", "0.67", False),
    ("-\\frac{5}{2}", "-2.5", True), ("-\\frac{5}{2}", "2.5", False), ("\\frac{-5}{2}", "-\\frac{5}{2}", True),
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}", False), ("\\frac{1}{2004!}", "\\frac{1}{2004!}", True),
    ("\\frac{2005 \\cdot 2006}{2006!}", "\\frac{1}{2004!}", True),
    ("\\frac{7}{12}", "7/12", True), ("\\frac{7}{12}", "\\frac{14}{24}", True), ("\\frac{7}{12}", "\\frac{7}{13}", False),
    ("2\\frac{1}{2}", "2.5", True), ("\\frac{9}{2}", "4.5", True), ("\\frac{22}{7}", "\\pi", False),
    ("\\frac{1}{1000000}", "\\frac{1}{1000001}", False), ("\\frac{10}{3}", "3\\frac{1}{3}", True),
])

LATEX = _cases("latex", [
    ("2\\sqrt{3}", "\\sqrt{12}", True), ("2\\sqrt{3}", "2*sqrt(3)", True), ("2\\sqrt{3}", "\\sqrt{3}", False),
    ("\\sqrt{2}", "2^{1/2}", True), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{2}}{2}", False), ("\\pi", "\\pi", True), ("2\\pi", "2 \\pi", True),
    ("\\frac{\\pi}{2}", "\\pi/2", True), ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}", False), ("\\pi", "3.14159", True),
    ("\\pi", "3.14", False), ("3\\sqrt{2}", "\\sqrt{18}", True), ("\\sqrt[3]{8}", "2", True),
    ("\\sqrt{8}", "2\\sqrt{2}", True), ("4\\pi", "12.566370614", True), ("e^{2}", "e^2", True),
    ("\\infty", "\\infty", True), ("-\\infty", "\\infty", False), ("\\sqrt3", "\\sqrt{3}", True),
    ("\\left(\\frac{1}{2}\\right)", "\\frac{1}{2}", True), ("\\displaystyle\\frac{5}{6}", "5/6", True),
    ("10\\sqrt{5}", "\\sqrt{500}", True), ("5\\sqrt{2}", "7.0710678", True), ("\\frac{3\\sqrt{3}}{4}", "\\frac{3}{4}\\sqrt{3}", True),
    ("\\binom{5}{2}", "10", True), ("\\log_2 8", "3", True), ("\\sin\\frac{\\pi}{6}", "\\frac{1}{2}", True),
    ("\\cos 0", "1", True), ("2^{10}", "1024", True), ("5!", "120", True),
])

SYMBOLIC = _cases("symbolic", [
    ("x^2+2x+1", "(x+1)^2", True), ("x^2-1", "(x-1)(x+1)", True), ("x^2-1", "(x-1)^2", False),
    ("2x+3", "3+2x", True), ("2x+3", "2x-3", False), ("\\frac{x}{2}", "x/2", True), ("\\frac{x}{2}", "0.5x", True),
    ("e^{x}", "exp(x)", True), ("\\sin^2 x + \\cos^2 x", "1", True), ("a+b", "b+a", True), ("ab", "ba", True),
    ("a-b", "b-a", False), ("\\frac{1}{x+1}", "(x+1)^{-1}", True), ("3x^2", "3*x**2", True),
    ("x^3", "x^2", False), ("\\sqrt{x^2}", "x", False), ("2\\sin x\\cos x", "\\sin 2x", True),
    ("\\frac{x^2-4}{x-2}", "x+2", True), ("n(n+1)/2", "\\frac{n^2+n}{2}", True), ("4n-3", "4n - 3", True),
    ("2^{n}", "2^{n+1}", False), ("x^2+y^2", "y^2+x^2", True),
])

SETS = _cases("sets", [
    ("(0,1]", "(0,1]", True), ("(0,1]", "(0,1)", False), ("(0,1]", "[0,1]", False), ("[0,1)", "[0, 1)", True),
    ("\\{1,2,3\\}", "\\{3,2,1\\}", True), ("\\{1,2,3\\}", "\\{1,2\\}", False), ("\\{1,2,3\\}", "\\{1,2,4\\}", False),
    ("\\{1,2,3\\}", "1, 2, 3", True), ("(1,2)", "(1, 2)", True), ("(1,2)", "(2,1)", False), ("(3,-4)", "(3, -4)", True),
    ("(3,-4)", "(3, 4)", False), ("(1,2,3)", "(1,2,3)", True), ("(1,2,3)", "(3,2,1)", False),
    ("(-\\infty, 3]", "(-\\infty,3]", True), ("(-\\infty, 3]", "x \\le 3", True), ("(-\\infty, 3)", "x \\le 3", False),
    ("[1,2)\\cup(3,4]", "[1,2) \\cup (3,4]", True), ("[1,2)\\cup(3,4]", "[1,2] \\cup (3,4]", False),
    ("(-\\infty,-2)\\cup(2,\\infty)", "(-\\infty,-2) \\cup (2, \\infty)", True), ("\\{-2, 2\\}", "\\{2, -2\\}", True),
    ("\\{\\frac{1}{2}, 3\\}", "\\{0.5, 3\\}", True), ("(\\frac{1}{2}, \\frac{3}{4})", "(0.5, 0.75)", True),
    ("\\{5\\}", "5", True), ("5", "\\{5\\}", True), ("(2, 3)", "(2,3]", False),
    ("\\emptyset", "\\emptyset", True), ("\\{1, 2, 3\\}", "\\{1, 2, 3, 4\\}", False),
])

EQUATIONS = _cases("equations", [
    ("11", "x = 5+5+1 = 7 = 11", True), ("11", "x = 11", True), ("x = 11", "11", True), ("x=11", "x = 11", True),
    ("11", "x = 12", False), ("y = 2x + 3", "2x+3", True), ("y = 2x + 3", "y = 3 + 2x", True),
    ("y = 2x + 3", "y = 2x - 3", False), ("x + y = 5", "y + x = 5", True), ("x+y=5", "x + y = 6", False),
    ("x \\le 3", "x \\le 3", True), ("x < 3", "x \\le 3", False), ("x > 2", "2 < x", True), ("x \\ge 1", "x > 1", False),
    ("k = 4", "4", True), ("7", "a = 7", True), ("7", "3 + 4 = 7", True), ("-2", "x = -2", True),
    ("x^2 + y^2 = 25", "y^2 + x^2 = 25", True), ("x^2 + y^2 = 25", "x^2 + y^2 = 5", False),
])

MATRICES = _cases("matrices", [
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", False),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", False),
    ("\\begin{pmatrix}\\frac{1}{2}\\\\0\\end{pmatrix}", "\\begin{pmatrix}0.5\\\\0\\end{pmatrix}", True),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}", False),
    ("\\begin{pmatrix}2&0\\\\0&2\\end{pmatrix}", "\\begin{pmatrix}2&0\\\\0&2\\end{pmatrix}", True),
    ("\\begin{pmatrix}\\sqrt{4}&1\\end{pmatrix}", "\\begin{pmatrix}2&1\\end{pmatrix}", True),
])

PERCENT = _cases("percent", [
    ("28\\%", "28", True), ("28\\%", "0.28", True), ("28\\%", "28\\%", True), ("28\\%", "28%", True),
    ("28", "28\\%", True), ("0.28", "28\\%", True), ("28", "0.28", False), ("28\\%", "29\\%", False),
    ("12.5\\%", "12.5", True), ("12.5\\%", "\\frac{1}{8}", True), ("50\\%", "\\frac{1}{2}", True),
    ("50\\%", "0.05", False), ("100\\%", "1", True), ("5\\%", "5 percent", True),
])

MULTIPLE_CHOICE = _cases("multiple_choice", [
    ("C", "C", True), ("C", "(C)", True), ("C", "\\text{(C)}", True), ("C", "\\textbf{C}", True),
    ("C", "B", False), ("C", "(B)", False), ("C", "C) 42", True), ("C", "A or C", False),
    ("(A)", "A", True), ("\\text{(D)}", "D", True), ("E", "\\text{E}", True), ("B", "\\mathrm{B}", True),
    ("A", "The answer is (A).", True), ("B", "The answer is \\boxed{D}.", False),
])

SOLUTIONS = _cases("solutions", [
    ("18", "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.\n#### 18", True),
    ("18", "She has 9 eggs left and earns 9 * 2 = 18 dollars.\nThe answer is 18.", True),
    ("18", "She has 9 eggs left and earns 9 * 2 = 18 dollars.\nThe answer is 19.", False),
    ("\\frac{3}{4}", "The probability is the ratio of favourable outcomes: $\\frac{6}{8}$, so the answer is $\\boxed{\\frac{3}{4}}$.", True),
    ("\\frac{3}{4}", "We get $\\frac{6}{8} = \\frac{3}{4}$. Hmm, wait, recounting gives \\boxed{\\frac{2}{3}}.", False),
    ("2\\sqrt{3}", "The height is $\\sqrt{12}$, which simplifies to $\\boxed{2\\sqrt{3}}$.", True),
    ("(0,1]", "The function is defined when $0 < x \\le 1$. Therefore the domain is $\\boxed{(0,1]}$.", True),
    ("\\{1,2,3\\}", "Testing each value, the solutions are \\boxed{\\{1, 2, 3\\}}.", True),
    ("5", "Adding gives 2 + 3 = 5. Final answer: \\boxed{5}", True),
    ("5", "Adding gives 2 + 3 = 5. Final answer: \\boxed{6}", False),
    ("5", "I think it is \\boxed{5} or \\boxed{6}.", False),
    ("5", "Let me compute: \\boxed{5}. Double-checking, yes: \\boxed{5}.", True),
    ("72", "Natalia sold 48/2 = 24 clips in May.\nAltogether she sold 48+24 = 72 clips.\n#### 72", True),
    ("10", "Weng earns 12/60 = $0.2 per minute.\nFor 50 minutes she earned 0.2 x 50 = $10.\n#### 10", True),
    ("624", "The total is $\\boxed{624}$ dollars.", True),
    ("\\frac{1}{2}", "Since the coin is fair, the answer is $\\frac{1}{2}$.", True),
    ("\\frac{1}{2}", "Computing step by step we find the probability equals 0.5", True),
    ("12", "We count 3 rows of 4, which is 12 squares in total.", True),
    ("12", "We count 3 rows of 4 squares and 1 extra, so 13.", False),
    ("x^2-1", "Expanding the product gives $\\boxed{(x-1)(x+1)}$", True),
    ("\\frac{\\pi}{4}", "The angle is $\\boxed{45^\\circ}$", False),
    ("3", "\\fbox{3}", True), ("9", "The final answer is $\\boxed{\\boxed{9}}$", True),
    ("2", "First, $x=1$... Actually $x$ must be even, giving \\boxed{x=2}", True),
])

TRAPS = _cases("traps", [
    ("1/0", "2/0", False), ("\\frac{1}{0}", "\\frac{2}{0}", False), ("12:00", "1:00", False),
    ("3:30", "3:45", False), ("5", "5 or 6", False), ("5", "5 \\text{ or } 6", False), ("5", "\\boxed{5} or \\boxed{6}", False),
    ("5", "\\{1,2,3,4,5,6,7,8,9,10\\}", False), ("5", "1,2,3,4,5,6,7,8,9,10", False), ("5", "\\boxed{1,2,\\ldots,10}", False),
    ("2", "\\pm 2", False), ("10", "1", False), ("0.1", "0.10000001", False), ("100", "99.9999", False),
    ("\\frac{1}{2004!}", "0", False), ("1", "0.9999999", False), ("2", "2x", False), ("x", "y", False),
    ("\\sqrt{2}", "1.41", False), ("7,425,000", "7.425", False), ("1,22", "122", False),
])

ALL_CASES: list[Case] = (NUMBERS + FRACTIONS + LATEX + SYMBOLIC + SETS + EQUATIONS + MATRICES + PERCENT
                         + MULTIPLE_CHOICE + SOLUTIONS + TRAPS)

# Inputs built to hang, exhaust memory, crash a parser or run code; every one must score 0.0
# within the time limit with no side effect. ``{marker}`` is replaced by a file path that the
# injection would create.
ADVERSARIAL: list[tuple[str, str]] = [
    ("injection", "__import__('os').system('touch {marker}')"),
    ("injection", "\\boxed{__import__('os').system('touch {marker}')}"),
    ("injection", "exec(\"open('{marker}','w').write('x')\")"),
    ("injection", "eval(compile('open(\"{marker}\",\"w\")','','exec'))"),
    ("injection", "\\boxed{().__class__.__bases__[0].__subclasses__()}"),
    ("injection", "lambda: open('{marker}', 'w')"),
    ("huge_compute", "9^9^9^9"), ("huge_compute", "9^{9^{9^{9}}}"), ("huge_compute", "1000000!"),
    ("huge_compute", "(10^{8})!"), ("huge_compute", "2**2**2**2**2**2"), ("huge_compute", "10^{10^{10}}"),
    ("huge_compute", "\\prod_{k=1}^{100000} k"), ("huge_compute", "x^{123456789}-1"),
    ("size", "1" * 1_000_000), ("size", "\\frac{" * 5000), ("size", "(" * 5000 + "1" + ")" * 5000),
    ("size", "{" * 3000 + "1" + "}" * 3000), ("size", "\\sqrt{" * 2000 + "2" + "}" * 2000),
    ("unicode", "\x00\x00\x001"), ("unicode", "１\u200b２"), ("unicode", "\ufeff\u202e42"), ("unicode", "𝟒𝟐"),
    ("malformed", "\\frac{1}{"), ("malformed", "\\boxed{\\frac{1}{2}"), ("malformed", "}}}{{{"),
    ("malformed", "\\begin{pmatrix}1&2\\\\"), ("malformed", "\\sqrt"), ("malformed", "$$$$"), ("malformed", "\\\\\\\\"),
]
