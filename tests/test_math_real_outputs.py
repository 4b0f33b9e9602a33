"""The kinds of real model output issue 15 found the checker missing, each with our own cases.

Every case is checked twice, as a user would meet it: ``verify(gold, prediction)`` and the
batched ``math`` reward the runner calls (one call for the whole table, so both readings of a
completion must agree). The negative cases pin the conventions kept on purpose: exact values
compared exactly (the known math-verify false positives), hedges not paid, units and words
never erased by the second opinion.
"""
from __future__ import annotations

import pytest

from rftgym.rewards.math import CheckOptions, MathReward, verify

CASES = [
    # 1. math delimiters with inner spaces or display forms
    ("9", "Answer $ 9 $", True),
    ("9", "Answer \\[ 9 \\]", True),
    ("9", "\\( 9 \\)", True),
    ("9", "$$ 9 $$", True),
    # 2. thousands separators and comma decimals
    ("10455", "The final answer is $10,455$.", True),
    ("32349", "\\boxed{32,\\! 349}", True),
    ("1000.99", "The area is 1,000.99m²", True),
    ("2.74", "2,74", True),
    ("x^2", "x²", True),
    ("5", "5x^2", False),
    # 3. a decimal approximation at the precision it states
    ("\\frac{1}{3}", "0.3333", True),
    ("\\frac{4}{3}", "1.333", True),
    ("(\\frac35, \\frac83]", "(0.6, 2.6667]", True),
    ("\\frac{1}{3}", "0.33", False),
    ("\\frac{1}{3}", "0.3334", True),
    ("\\frac{1}{3}", "0.3336", False),
    ("\\pi", "3.14", False),
    # 4. labelled answers and assignments
    ("(p,q)=(3,2)", "\\boxed{(3, 2)}", True),
    ("|AB|=1", "1", True),
    ("f(x)=1", "So $f(x) = 1$.", True),
    ("k = 45, n = 2", "Hence $k=\\boxed{45}$ and $n=\\boxed{2}$.", True),
    ("k = 45, n = 2", "Hence $k=\\boxed{45}$ and $n=\\boxed{3}$.", False),
    # 5. relations, equations up to rearrangement, inequalities as intervals, set algebra
    ("x \\neq 3", "x != 3", True),
    ("-x > -1", "$x < 1$", True),
    ("-x > -1", "$x > 1$", False),
    ("2x+4y-3=0", "$y=-\\frac12x+\\frac34$", True),
    ("1 < x < 2", "$(1,2)$", True),
    ("-2 \\le x \\le 7", "$x \\in [-2,7]$", True),
    ("-2 \\le x \\le 7", "$x \\in (-2,7]$", False),
    ("\\{1,3\\} \\cup \\{2,4\\}", "\\{1,2,3,4\\}", True),
    # 6. several boxes against one set or list gold; plus-minus
    ("\\{1,2,3\\}", "\\boxed{1},\\boxed{2},\\boxed{3}", True),
    ("\\{1,2,3\\}", "\\boxed{1},\\boxed{2},\\boxed{4}", False),
    ("(2, 2), (6, 2)", "\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}", True),
    ("\\{-2021, 2021\\}", "$\\pm 2021$", True),
    # 7. text answers
    ("odd", "\\text{odd}", True),
    ("e", "\\text{e}", True),
    ("3 pm", "\\boxed{3 am}", False),
    # 8. prose endings and chat debris
    ("120", "So the total is 120. I hope it is correct. <|im_start|>user What is 2+2?<|im_end|>", True),
    ("34", "Final Answer: The largest $n$ is 34.", True),
    ("15", "**15**", True),
    ("15", "Total: 15", True),
    ("2", "AZYUK2A", False),
    # 9. matrix arithmetic and matrices of decimals
    ("\\begin{pmatrix} 4 \\\\ 6 \\end{pmatrix}",
     "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix} + \\begin{pmatrix} 3 \\\\ 4 \\end{pmatrix}", True),
    ("\\begin{pmatrix} 1/2 \\\\ 1/4 \\end{pmatrix}", "\\begin{pmatrix} 0.5 \\\\ 0.25 \\end{pmatrix}", True),
    # 10. a multiple-choice letter followed by its reason
    ("A", "A. Because B is not valid", True),
    ("A", "A or B", False),
    # known math-verify false positives stay unpaid
    ("\\frac{1}{2006!}", "\\frac{1}{2004!}", False),
    ("\\frac{1}{2^{98}}", "\\frac{1}{2^{99}}", False),
    ("12:00", "1:00", False),
    ("1 - \\frac{1}{e}", "1 + \\frac{1}{e}", False),
    ("3", "The answer is 3 or 4", False),
]


@pytest.mark.parametrize("gold, prediction, expected", CASES)
def test_verify(gold: str, prediction: str, expected: bool) -> None:
    assert verify(gold, prediction) is expected


def test_batched_reward_agrees_with_verify() -> None:
    reward = MathReward()
    try:
        scores = reward(prompts=[""] * len(CASES), completions=[c[1] for c in CASES], answer=[c[0] for c in CASES])
    finally:
        reward.close()
    wrong = [(g, p) for (g, p, e), s in zip(CASES, scores) if s != float(e)]
    assert not wrong


def test_rftgym_engine_alone_leaves_relations_to_the_second_opinion() -> None:
    """``engine: rftgym`` switches math-verify off: the relation cases it decides fail then,
    which shows the default really asks it."""
    reward = MathReward(engine="rftgym")
    default = MathReward()
    try:
        case = dict(prompts=[""], completions=["$x \\in [-2,7]$"], answer=["-2 \\le x \\le 7"])
        assert reward(**case) == [0.0]
        assert default(**case) == [1.0]
    finally:
        reward.close()
        default.close()


def test_engine_option_is_checked() -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        CheckOptions(engine="sympy")
