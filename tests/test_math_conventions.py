"""Math checker conventions found on third-party outputs (issue 15, second round). Each case
is written here for its kind; none is a benchmark row."""
from __future__ import annotations

import pytest

from rftgym.rewards.math import CheckOptions, MathReward, verify
from rftgym.rewards.math.check import clean_answer, precheck
from rftgym.rewards.math.extract import extract
from rftgym.rewards.math.text import strip_noise, undouble_backslashes


@pytest.fixture(scope="module")
def reward():
    r = MathReward(timeout=10.0, workers=1)
    r.setup()
    yield r
    r.close()


# -- text stored with every backslash doubled ------------------------------------------------
def test_doubled_backslashes_are_undone_only_when_all_are_doubled():
    assert undouble_backslashes("\\\\frac{3}{7}+\\\\sqrt{2}") == "\\frac{3}{7}+\\sqrt{2}"
    matrix = "\\begin{pmatrix}1\\\\2\\end{pmatrix}"  # a real row break beside single backslashes
    assert undouble_backslashes(matrix) == matrix
    assert undouble_backslashes("1 \\\\ 2") == "1 \\\\ 2"  # no command after the doubled one


def test_doubled_backslash_gold_compares_as_latex():
    assert precheck("$\\\\frac{5}{8}$", "\\frac{5}{8}", CheckOptions()).verdict is True
    assert precheck("$\\\\frac{5}{8}$", "\\frac{3}{8}", CheckOptions()).verdict is False
    assert verify("$\\\\left(\\\\frac{2}{7},\\\\frac{3}{7}\\\\right)$", "\\boxed{\\left(\\frac{2}{7}, \\frac{3}{7}\\right)}")


# -- a dangling backslash ---------------------------------------------------------------------
@pytest.mark.parametrize("gold, pred, ok", [("712", "712\\", True), ("712\\", "712", True), ("712\\", "713", False)])
def test_a_trailing_backslash_names_no_value(gold, pred, ok):
    assert strip_noise(pred).endswith("\\") is False
    assert precheck(gold, pred, CheckOptions()).verdict is ok


# -- {1,2,3} without backslashes is a set ------------------------------------------------------
def test_plain_braced_list_is_a_set():
    assert clean_answer("{4,5,6}") == "\\{4,5,6\\}"
    assert clean_answer("{x}") == "{x}"                      # a group, not a set
    assert clean_answer("{(1,2)}") == "{(1,2)}"


@pytest.mark.parametrize("pred, ok", [
    ("\\boxed{4}, \\boxed{5}, \\boxed{6}", True),               # one box per element
    ("\\boxed{6} and \\boxed{4} and \\boxed{5}", True),         # a set has no order
    ("\\boxed{4} and \\boxed{5}", False),                       # an element missing
    ("\\boxed{4} or \\boxed{5} or \\boxed{7}", False),
])
def test_boxes_against_a_plain_braced_set_gold(pred, ok):
    assert verify("$${4,5,6}$$", pred) is ok


# -- a multiple-choice gold that carries its option's text ------------------------------------
@pytest.mark.parametrize("gold, pred, ok", [
    ("B. y = 17", "B", True),
    ("B. y = 17", "(B)", True),
    ("B. y = 17", "D", False),
    ("(D) 8 cm", "D", True),
    ("B. 17", "17", True),                                      # the option's content also counts
    ("B. 17", "18", False),
])
def test_choice_gold_with_option_text(gold, pred, ok):
    assert verify(gold, pred) is ok


# -- a stated final answer after the last box -------------------------------------------------
def test_final_answer_statement_after_intermediate_boxes():
    text = ("First part: $3 \\cdot 40 = \\boxed{120}$. Second part: $120 + 35 = \\boxed{155}$. "
            "Adding the fee, the total is $1,155. Final Answer: The final answer is $1,155$. I hope it is correct.")
    found = extract(text, ("boxed", "hash", "answer_is"))
    assert found.text == "$1,155$" and found.strategy == "answer_is"
    assert verify("1155", text)
    assert not verify("155", text)


def test_a_box_then_prose_without_a_value_keeps_the_box():
    text = "So $x = \\boxed{14}$.\n\nThe answer is correct because both sides balance."
    assert extract(text, ("boxed", "hash", "answer_is")).text == "14"
    assert verify("14", text)


def test_boxed_only_extraction_is_unchanged_by_a_later_statement():
    text = "\\boxed{3}. Final answer: 4"
    assert extract(text, ("boxed",)).text == "3"


# -- labelled boxes with subscripted names -----------------------------------------------------
def test_subscripted_labels_name_separate_answers(reward):
    text = "Hence \\(a_1 = \\boxed{x+1}\\) and \\(a_{2} = \\boxed{2x}\\)."
    found = extract(text, ("boxed",))
    assert found.labelled == ("a_1=x+1", "a_2=2x") and not found.hedge
    golds = ["a_{1}=1+x, a_{2}=2x", "a_{1}=1+x, a_{2}=3x"]
    assert reward(prompts=["", ""], completions=[text, text], answer=golds) == [1.0, 0.0]


def test_one_subscripted_variable_twice_is_a_hedge():
    found = extract("$t_1 = \\boxed{4}$ or $t_1 = \\boxed{5}$", ("boxed",))
    assert found.hedge
    assert not verify("4", "$t_1 = \\boxed{4}$ or $t_1 = \\boxed{5}$")


# -- equations equal up to rearrangement and a constant factor --------------------------------
@pytest.mark.parametrize("gold, pred, ok", [
    ("3x - 6y = 9", "y = \\frac{x}{2} - \\frac{3}{2}", True),
    ("\\frac{x^2}{9} + \\frac{y^2}{4} = 1", "4x^2 + 9y^2 = 36", True),
    ("x + y = 1", "x + y = 2", False),
    ("x + y = 1", "x + z = 1", False),
    ("x^2 = 9", "x = 3", False),                                  # not a constant multiple
])
def test_scaled_equations(gold, pred, ok):
    assert verify(gold, pred) is ok


def test_a_no_between_exact_polynomials_is_final():
    import sympy

    from rftgym.rewards.math.second_opinion import exact_polynomials

    x, y, o, d = sympy.symbols("x y o d")
    assert exact_polynomials([x**2 + 1], [x**3 + 1])
    assert exact_polynomials([sympy.Eq(x + y, 1)], [sympy.Eq(x + y, 2)])
    assert not exact_polynomials([o * d * d], [x + 1])          # a word read as a product
    assert not exact_polynomials([x + 1], [y + 1])               # different names
    assert not exact_polynomials([x + sympy.Float(0.5)], [x + 1])
    assert not exact_polynomials([x + 1, x], [x + 2])            # several readings


# -- mixed numbers ----------------------------------------------------------------------------
@pytest.mark.parametrize("gold, pred, ok", [
    ("2 3/4", "2.75", True), ("2 3/4", "\\frac{11}{4}", True), ("-1 1/3", "-\\frac{4}{3}", True),
    ("5\\frac{1}{2}", "5.5", True), ("5\\frac{1}{2}", "\\frac{5}{2}", False),
    ("2 3/4", "1.5", False),                                      # not 2 * 3/4
])
def test_mixed_numbers(gold, pred, ok):
    assert precheck(gold, pred, CheckOptions()).verdict is ok


def test_an_improper_fraction_after_a_number_is_not_a_mixed_number():
    from rftgym.rewards.math.text import parse_plain_number

    assert parse_plain_number("2 5/4") is None
    assert parse_plain_number("4\\frac{2}{2}") is None


# -- a gold that is a worked solution without a box -------------------------------------------
def test_unboxed_solution_gold_gives_its_stated_answer():
    from rftgym.rewards.math.extract import unwrap_gold

    gold = ("The train covers $60 \\cdot 2 = 120$ miles in the first two hours and $45 \\cdot 3 = 135$ miles "
            "after that, so together it travels $120 + 135 = 255$ miles over the whole trip, as asked. "
            "Final Answer: The final answer is $255$. I hope it is correct.")
    assert unwrap_gold(gold) == "$255$"
    assert verify(gold, "\\boxed{255}")
    assert not verify(gold, "\\boxed{135}")
    assert unwrap_gold("the answer is 4 apples") == "the answer is 4 apples"  # short: left as written


# -- a matrix written as an array --------------------------------------------------------------
@pytest.mark.parametrize("pred, ok", [
    ("\\left(\\begin{array}{cc}5 & 0 \\\\ 0 & 7\\end{array}\\right)", True),
    ("\\left[\\begin{array}{c|c}5 & 0 \\\\ 0 & 7\\end{array}\\right]", True),
    ("\\begin{array}{cc}5 & 0 \\\\ 0 & 7\\end{array}", True),
    ("\\left[\\begin{array}{cc}5 & 0 \\\\ 0 & 8\\end{array}\\right]", False),
])
def test_array_as_matrix(pred, ok):
    assert verify("\\begin{pmatrix}5 & 0 \\\\ 0 & 7\\end{pmatrix}", pred) is ok


# -- times of day ------------------------------------------------------------------------------
@pytest.mark.parametrize("gold, pred, ok", [
    ("17:45", "17:45:00", True), ("17:45", "05:45 \\text{P.M.}", True), ("17:45", "5:45 pm", True),
    ("17:45", "5:45", False), ("12:00", "1:00", False), ("12:10 am", "0:10", True), ("9:05 a.m.", "09:05", True),
])
def test_times_of_day(gold, pred, ok):
    assert precheck(gold, pred, CheckOptions()).verdict is ok


def test_ratios_are_not_times():
    assert precheck("3:4", "6:8", CheckOptions()).reason != "times of day"
