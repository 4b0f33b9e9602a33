"""Procedural tasks: determinism, disjoint held-out splits, and the countdown checker."""
from __future__ import annotations

import builtins
import time

import numpy as np
import pytest

from rftgym.envs.tasks.arithmetic import ArithmeticTask
from rftgym.envs.tasks.countdown import (
    MAX_DEPTH,
    CountdownReward,
    CountdownTask,
    ExpressionError,
    check_solution,
    evaluate,
    extract_expression,
    parse,
)


@pytest.mark.parametrize("make", [
    lambda split: ArithmeticTask(split=split, digits=2, ops=("+", "-", "*")),
    lambda split: CountdownTask(split=split, min_numbers=3, max_numbers=3, max_number=20),
])
def test_train_and_test_never_overlap_and_sampling_is_deterministic(make):
    train, test = make("train"), make("test")
    key = (lambda r: CountdownTask.key(r["numbers"], r["target"])) if "numbers" in train.sample(np.random.default_rng(0)) \
        else (lambda r: r["prompt"])
    train_keys = {key(train.sample(rng)) for rng in [np.random.default_rng(1)] for _ in range(1500)}
    test_keys = {key(row) for row in test.rows(300)}
    assert len(test_keys) >= 200 and len(train_keys) > 300
    assert train_keys.isdisjoint(test_keys)
    assert all(test.in_split(row) and not train.in_split(row) for row in test.rows(50))
    a = [train.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [train.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b and train.rows(5) == make("train").rows(5)


def test_countdown_problems_are_solvable_and_prompt_hides_solution():
    task = CountdownTask()
    rng = np.random.default_rng(0)
    for _ in range(200):
        row = task.sample(rng)
        assert 3 <= len(row["numbers"]) <= 4 and 1 <= row["target"] <= 999
        assert check_solution(row["answer"], row["numbers"], row["target"], require_all=True)
        assert row["answer"] not in row["prompt"] and str(row["target"]) in row["prompt"]
    with pytest.raises(ValueError, match="split"):
        CountdownTask(split="valid")


def test_countdown_checker_semantics():
    nums, target = [3, 7, 25, 50], 175
    assert check_solution("(50 - 25) * 7", nums, target)
    assert check_solution("7*25", nums, target)  # each number at most once, not all required
    assert not check_solution("7*25", nums, target, require_all=True)
    assert check_solution("(50-25)*7+3-3", [3, 3, 7, 25, 50], target, require_all=True)
    assert not check_solution("(50-25)*7+3-3", nums, target)  # 3 used twice
    assert not check_solution("25*7+0", nums, target)  # 0 is not given
    assert not check_solution("175", nums, target)
    assert check_solution("50/(3-1)*7", [50, 3, 1, 7], 175)  # exact fractions
    assert check_solution("7/3*75", [7, 3, 75], 175) and not check_solution("7/3*75", [7, 3, 75], 174)
    assert not check_solution("50/(25-25)", [50, 25, 25], 0)  # division by zero is wrong, not a crash
    assert evaluate(parse("1-2-3")) == -4 and evaluate(parse("2*3+4*5")) == 26 and evaluate(parse("8/4/2")) == 1


@pytest.mark.parametrize("text", [
    "", "()", "(1+2", "1+2)", "1++2", "-1+2", "1 2", "2^3", "2**3", "__import__('os')", "1e3", "1.5+2",
    "abs(3)", "3 % 2", "0x10", "1+2; 3",
])
def test_countdown_parser_rejects_malformed(text):
    with pytest.raises(ExpressionError):
        parse(text)


def test_countdown_parser_bounds_adversarial_input_without_eval(monkeypatch):
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: pytest.fail("eval was called"))
    deep = "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)
    ok = "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH
    assert evaluate(parse(ok)) == 1
    start = time.perf_counter()
    for text in [deep, "(" * 100_000 + "1", "9" * 5000, "9" * 13 + "*2", "1+" * 1000 + "1", "x" * 10**6]:
        with pytest.raises(ExpressionError):
            parse(text)
        assert not check_solution(text, [1, 2], 3)
    # many huge products are rejected before any arithmetic: literals must be the given numbers
    assert not check_solution("*".join(["999999999999"] * 40), [999999999999], 1)
    assert time.perf_counter() - start < 1.0


def test_countdown_reward_and_extraction():
    reward = CountdownReward()
    completions = ["<think>try</think><answer>(50-25)*7</answer>", "working...\n7*25 = 175", "7*26", "no idea",
                   "<answer>7*25</answer> then <answer>3+7</answer>"]
    n = len(completions)
    scores = reward(prompts=[""] * n, completions=completions, numbers=[[3, 7, 25, 50]] * n, target=[175] * n)
    assert scores == [1.0, 1.0, 0.1, 0.0, 0.1]
    assert extract_expression("a\n\n 1+2 = 3 \n") == "1+2"
    strict = CountdownReward(format_score=0.0, require_all=True)
    assert strict(prompts=[""], completions=["7*25"], numbers=[[3, 7, 25, 50]], target=[175]) == [0.0]
