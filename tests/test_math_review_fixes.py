"""Regression tests for the math-checker review: parent-side regex blowups, undecided checks
cached as wrong, MemoryError as "unparsable", Unicode minus, number-by-number products,
multiple-choice hedges, "answer is" formats, and the bandit env's resume position."""
from __future__ import annotations

import json
import time

import pytest

from rftgym.envs.bandit import PromptBanditEnv
from rftgym.rewards.math import reward as math_module
from rftgym.rewards.math import check as math_check, parse as math_parse
from rftgym.rewards.math import MathReward, verify
from rftgym.rewards.math.check import CheckOptions
from rftgym.rewards.math.extract import extract
from rftgym.rewards.math.guard import refuse_reason
from rftgym.rewards.math.text import split_percent
from rftgym.rewards.math.verifier import MathVerifier

# A behaviour bound, not a benchmark: before the fixes these took 0.5 s to 40 s.
FAST = 1.0


@pytest.fixture(scope="module")
def reward():
    r = MathReward(timeout=2.0, workers=1)
    r.setup()
    yield r
    r.close()


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


# -- 1. parent-process regex blowups -------------------------------------------------------
def test_guard_whitespace_run_is_fast_and_verdicts_unchanged() -> None:
    got, took = _timed(refuse_reason, "2^" + " " * 1990 + "x")
    assert got is None and took < FAST
    assert refuse_reason("2^{3^{4^5}}") == "power tower"
    assert refuse_reason("2 ^ \n 3 ^ 4") == "power tower"
    assert refuse_reason("9^{99999999}") == "huge power"
    assert refuse_reason("10^ {   30000}") == "huge power"
    assert refuse_reason("(100000)!") == "huge factorial"
    assert refuse_reason("100000 \n !") == "huge factorial"
    assert refuse_reason("2^{10}") is None and refuse_reason("5!") is None


def test_split_percent_is_linear_and_unchanged() -> None:
    got, took = _timed(split_percent, " " * 2000 + "x")
    assert got == (" " * 2000 + "x", False) and took < FAST
    assert split_percent("28\\%") == ("28", True)
    assert split_percent("28 percent ") == ("28", True)
    assert split_percent("28\\text{ percent }") == ("28", True)
    assert split_percent("28%") == ("28", True)
    assert split_percent("28") == ("28", False)
    assert split_percent("28percent") == ("28percent", False)


def test_verify_prose_check_is_fast() -> None:
    # The parent's part of verify() (the prose test); the worker's own parse of the answer is
    # time-limited there and not what this bounds.
    got, took = _timed(math_module._answer_of, "ha" * 1000)
    assert got is not None and got.strategy == "whole" and took < FAST
    assert verify("5", "ha" * 1000) is False
    assert verify("0.5", "we find that x is 0.5")  # prose: still read as a solution
    assert verify("\\frac{1}{2}", "\\frac{1}{2}")  # a bare answer: still taken whole


def test_long_trailing_dots_in_a_box_are_fast(reward) -> None:
    got, took = _timed(reward, completions=["\\boxed{" + "." * 70000 + "x}"], answer=["5"])
    assert got == [0.0] and took < FAST


def test_extract_blowups_are_fast() -> None:
    got, took = _timed(extract, "the answer is x" + " " * 19000 + "y", ("answer_is",))
    assert got is not None and got.text.startswith("x") and took < FAST
    got, took = _timed(extract, "\\[" * 9000, ("dollar",))
    assert got is None and took < FAST
    got, took = _timed(extract, "$$" + "$" * 20000 + "x", ("dollar",))
    assert took < FAST
    assert extract("so \\[ x^2 \\] and then \\( 7 \\)", ("dollar",)).text == "7"


# -- 2. undecided checks are not cached as wrong ----------------------------------------------
class _StubPool:
    def __init__(self, reason: str) -> None:
        self.reason, self.calls, self.stats = reason, 0, {}

    def run(self, jobs):
        self.calls += 1
        return [(False, self.reason)] * len(jobs)


@pytest.mark.parametrize("reason", ["timeout", "worker died", "lost", "memory limit"])
def test_undecided_results_are_not_cached(reason) -> None:
    verifier = MathVerifier()
    verifier.pool = _StubPool(reason)
    pair = [("x^2 - 1", "(x-1)(x+1)")]
    assert verifier.verify_many(pair) == [False]
    assert verifier.verify_many(pair) == [False]
    assert verifier.pool.calls == 2 and verifier.stats["cached"] == 0


def test_decided_results_are_cached() -> None:
    verifier = MathVerifier()
    verifier.pool = _StubPool("different")
    pair = [("x^2 - 1", "(x-1)(x+2)")]
    verifier.verify_many(pair)
    verifier.verify_many(pair)
    assert verifier.pool.calls == 1 and verifier.stats["cached"] == 1


def test_real_timeout_is_checked_again() -> None:
    r = MathReward(timeout=0.5, workers=1)
    r.setup()
    try:
        slow = ["\\boxed{(10^{8})!}"]  # passes the guards, then runs for minutes in sympy
        assert r(completions=slow, answer=["1"]) == [0.0]
        assert r(completions=slow, answer=["1"]) == [0.0]
        assert r.stats["timeouts"] == 2 and r.stats["worker"] == 2 and r.stats["cached"] == 0
    finally:
        r.close()


# -- 3. MemoryError / RecursionError are not "unparsable" --------------------------------------
@pytest.mark.parametrize("error", [MemoryError, RecursionError])
def test_resource_errors_propagate_from_check_parsed(monkeypatch, error) -> None:
    def boom(*_args, **_kwargs):
        raise error()

    monkeypatch.setattr(math_parse, "parse_plain", boom)
    monkeypatch.setattr(math_parse, "parse_latex", boom)
    math_parse.parse_answer.cache_clear()
    try:
        with pytest.raises(error):
            math_parse.parse_math("x + 1")
        with pytest.raises(error):
            math_check.check_parsed("x + 1", "1 + x", CheckOptions())
    finally:
        math_parse.parse_answer.cache_clear()


def test_recursion_in_one_parser_falls_back_to_the_other(monkeypatch) -> None:
    def deep(*_args, **_kwargs):
        raise RecursionError()

    monkeypatch.setattr(math_parse, "parse_plain", deep)
    assert math_parse.parse_math("x + 1") is not None  # the LaTeX parser reads it


# -- 4. Unicode minus -------------------------------------------------------------------------
def test_unicode_minus(reward) -> None:
    assert reward(completions=["\u22124", "so \\boxed{\u22124}"], answer=["-4", "-4"]) == [1.0, 1.0]
    assert reward(completions=["\u22124"], answer=["4"]) == [0.0]
    assert verify("-4", "The result is \u22124")
    assert not verify("4", "The result is \u22124")


# -- 5. two numbers side by side are not a product --------------------------------------------
def test_adjacent_numbers_are_not_multiplied() -> None:
    assert not verify("16", "8 2")
    assert not verify("210", "5 6 7")
    assert verify("4x", "2(2x)")
    assert verify("12", "3(4)")
    assert verify("2\\pi", "2 \\pi")
    assert verify("2\\sqrt{3}", "2 sqrt(3)")
    assert verify("6x", "2 \\cdot 3x")


# -- 6. multiple-choice hedges ----------------------------------------------------------------
def test_multiple_choice_hedges_score_zero(reward) -> None:
    hedges = ["\\boxed{A and B}", "\\boxed{A B C D}", "The answer is (A) (B) (C) (D)."]
    assert reward(completions=hedges, answer=["A"] * 3) == [0.0, 0.0, 0.0]
    plain = ["\\boxed{A}", "The answer is (A).", "\\boxed{(A) 5}", "\\boxed{A. x = 2}", "\\boxed{a}"]
    assert reward(completions=plain, answer=["A"] * 5) == [1.0] * 5


# -- 7. "answer is" formats -------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("Final Answer: The final answer is $2$. I hope it is correct.", "$2$"),
    ("The answer is **5**.", "5"),
    ("**Answer:** 5", "5"),
    ("The answer is 42, since 6*7 = 42.", "42"),
    ("The answer is 42 because 6*7 = 42.", "42"),
    ("The answer is (1, 2), so we are done.", "(1, 2)"),
    ("The answer is 1, 2, 3.", "1, 2, 3"),
    ("The answer is 5, or 6.", "5, or 6"),  # stays a hedge for the checker
    ("The answer is 3.5.", "3.5"),
])
def test_answer_is_extraction(text, expected) -> None:
    found = extract(text, ("answer_is",))
    assert found is not None and found.text == expected


def test_answer_is_formats_score(reward) -> None:
    completions = ["Final Answer: The final answer is $2$. I hope it is correct.", "The answer is **5**.",
                   "**Answer:** 5", "The answer is 42, since 6*7 = 42.", "The answer is 5, or 6."]
    assert reward(completions=completions, answer=["2", "5", "5", "42", "5"]) == [1.0, 1.0, 1.0, 1.0, 0.0]


# -- 8. PromptBanditEnv resume after step() ----------------------------------------------------
def _zero(completions, **_columns):
    return [0.0 for _ in completions]


def _prompts(save_after: int | None) -> list[str]:
    env = PromptBanditEnv(task="arithmetic", reward=_zero, check=None)
    prompts = []
    for i in range(6):
        prompt, _ = env.reset(seed=7) if i == 0 else env.reset()
        prompts.append(prompt)
        env.step("x")
        if save_after == i + 1:
            state = json.loads(json.dumps(env.state_dict()))
            env.close()
            env = PromptBanditEnv(task="arithmetic", reward=_zero, check=None)
            env.load_state_dict(state)
    env.close()
    return prompts


def test_bandit_resume_after_step_continues() -> None:
    straight, resumed = _prompts(None), _prompts(3)
    assert len(set(straight)) > 1
    assert resumed == straight


def _verify_and_reward_agree(gold: str, prediction: str, expected: bool) -> None:
    assert verify(gold, prediction) is expected
    reward = MathReward()
    try:
        assert reward(prompts=[""], completions=[prediction], answer=[gold]) == [float(expected)]
    finally:
        reward.close()


@pytest.mark.parametrize("gold, prediction, expected", [
    ("18", "She sells 9 eggs at $2 each, so she makes $18 per day.", True),   # currency, not $…$ math
    ("2", "She sells 9 eggs at $2 each, so she makes $18 per day.", False),
    ("18", "She makes $18.", True),                                           # a short sentence is prose
    (r"\frac{3}{4}", r"So we get $\frac{3}{4}$ as the result.", True),
])
def test_sentences_and_currency_in_verify_and_the_reward(gold, prediction, expected):
    _verify_and_reward_agree(gold, prediction, expected)


@pytest.mark.parametrize("gold, prediction", [
    ("yes", "yes"),                                                           # one word is an answer
    (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),  # {pmatrix} is no word
])
def test_bare_answers_are_not_mistaken_for_prose(gold, prediction):
    assert verify(gold, prediction) is True


@pytest.mark.parametrize("gold, prediction, expected", [
    ("12", "12 cookies", True),                                   # a plain-text unit is dropped
    ("12", "The answer is 12 cookies.", True),
    ("12 apples", "12", True),
    ("4.5", "4.5 km", True),
    ("1,000", "1,000 people", True),
    ("10 days", "10 day", True),
    ("5", "#### 5 dollars", True),
    ("13", "12 cookies", False),
    ("12", "12 hundred", False),                                  # words that change the value stay
    ("5", r"\boxed{5 thousands}", False),
    ("3", r"\boxed{3 fifths}", False),
    ("5", r"\boxed{5 halves}", False),
    ("3", "3 pi", False),
    ("5", r"\boxed{5 bn}", False),
    ("5", r"\boxed{5 xy}", False),                                # two letters: a product, not a unit
    ("5", r"\boxed{5 degrees below zero}", False),                # one word only
    ("0.3", r"\boxed{0.3 repeating}", False),
    ("3 pm", r"\boxed{3 am}", False),                             # the gold's unit must agree
    ("10 days", r"\boxed{10 weeks}", False),
    ("500 BC", "The answer is 500 AD.", False),
    ("5", "5 or more", False),                                    # hedges stay hedges
    ("2", "2 cookies and 3 cakes", False),
])
def test_plain_text_units_after_a_number(gold, prediction, expected):
    assert verify(gold, prediction) is expected


def test_plain_unit_pattern_is_linear_on_hostile_input():
    from rftgym.rewards.math.check import _PLAIN_UNIT

    # No nested repetition: a long run of letters or spaces is scanned once and rejected.
    assert _PLAIN_UNIT.match("12 " + "a" * 20000 + "!") is None
    assert _PLAIN_UNIT.match("12" + " " * 20000 + "a b") is None
    assert _PLAIN_UNIT.match("12 apples").groups() == ("12", "apples")


@pytest.mark.parametrize("gold, prediction, expected", [
    ("2, -3", r"x=\boxed{2} or x=\boxed{-3}", True),    # one box per root of a two-root gold
    ("2, -3", r"\boxed{-3} and \boxed{2}", True),
    (r"\{2, -3\}", r"\boxed{2}, \boxed{-3}", True),     # a set gold, one box per element (issue 15)
    (r"\{2, -3\}", r"\boxed{2}, \boxed{2}", False),     # a repeated box is not two elements
    ("2", r"\boxed{2} or \boxed{3}", False),            # still a hedge for one value
    ("-3", r"x=\boxed{2} or x=\boxed{-3}", False),
    ("2, 3, 4", r"\boxed{2}, \boxed{3}", False),        # as many boxes as values, no fewer
    ("1,000", r"\boxed{1} or \boxed{000}", False),      # a grouped number is not a list
    ("0,5", r"\boxed{0} or \boxed{5}", False),           # nor a comma decimal
    ("2, 3", r"\boxed{2, 3} or \boxed{2}", False),       # each box one value
    ("1, 2, 3", r"\boxed{1, 2} or \boxed{1, 3} or \boxed{2, 3}", False),
    ("3", r"So $a=\boxed{2}$, $b=\boxed{3}$", True),      # two variables: two answers, the last is b
    ("3", r"$x = \boxed{2}$ and $y = \boxed{3}$", True),
    ("2", r"x=\boxed{2} or \boxed{3}", False),
    ("5", r"\boxed{5}, \boxed{5}", True),               # a repeated box is no hedge
    ("6", r"First \boxed{5}. Wait, recomputing gives \boxed{6}", True),   # a revision is no hedge
])
def test_several_boxes_answer_a_list_gold(gold, prediction, expected):
    _verify_and_reward_agree(gold, prediction, expected)


@pytest.mark.parametrize("gold, prediction, expected", [
    ("-3", "x=2, x=-3", False),                 # a list of equations is not its last value
    ("-3", r"\boxed{x=2, x=-3}", False),
    ("7", "x=5, y=7", False),
    ("2, -3", "x=2, x=-3", True),               # it is the list of their values
    ("x=5, y=7", "y=7, x=5", True),
    ("5", "x=5", True),
])
def test_a_list_of_equations_is_a_list(gold, prediction, expected):
    # verify() reads a short bare answer whole; the reward's default extraction would take the
    # last number of an unmarked one, so it is checked on the boxed form
    assert verify(gold, prediction) is expected
    boxed = prediction if "boxed" in prediction else rf"\boxed{{{prediction}}}"
    _verify_and_reward_agree(gold, boxed, expected)


@pytest.mark.parametrize("pred, expected", [
    ("x = \\{2, 1\\}", True),   # the same set, written as an assignment: math-verify's opinion is asked
    ("x \\in \\{1, 2, 3\\}", False),
    ("x = 3", False),
])
def test_membership_in_a_set_reaches_a_verdict(pred, expected):
    # "x \in \{1,2\}" reads as Eq(x, {1, 2}); subtracting the set once raised TypeError in the
    # "is this polynomial final?" test, which the worker answered as an error (never paid).
    verdict, reason = math_check.check_parsed("x \\in \\{1, 2\\}", pred, CheckOptions())
    assert (verdict, reason.startswith("error")) == (expected, False)
