"""``rftgym/PythonTests-v0``: deterministic, disjoint splits, gold passes, mutants fail, check_env."""
from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import rftgym
from rftgym.envs.tasks.python_tests import PythonTestsTask, all_problems


def test_a_few_hundred_problems_with_disjoint_deterministic_splits():
    train, test = PythonTestsTask(), PythonTestsTask(split="test")
    assert len(train) + len(test) == len(all_problems()) >= 300
    assert not {p["prompt"] for p in train} & {p["prompt"] for p in test}
    assert [p["tests"] for p in PythonTestsTask()] == [p["tests"] for p in train]


def _mutate(gold: str) -> str:
    for old, new in (("return sum(", "return 1 + sum("), (" > ", " >= "), ("* ", "+ "), ("!=", "=="),
                     ("return -1", "return 0"), ("'_'", "'-'"), ("rjust", "ljust"), ("s.count(", "1 + s.count("),
                     ("s[::", "s[1::"), ("% len(xs)", "% len(xs) + 1"), ("== 0)", "== 1)")):
        if old in gold:
            return gold.replace(old, new, 1)
    return gold.replace("return ", "return None and ", 1)


@pytest.mark.slow
def test_gold_solutions_pass_and_mutants_fail():
    problems = all_problems()[::3]  # every family, every parameter range
    reward = rftgym.get_reward("code", mode="all")
    gold = reward(["p"] * len(problems), [f"```python\n{p['answer']}```" for p in problems],
                  tests=[p["tests"] for p in problems])
    mutants = reward(["p"] * len(problems), [_mutate(p["answer"]) for p in problems],
                     tests=[p["tests"] for p in problems])
    reward.close()
    assert gold == [1.0] * len(problems)
    assert sum(mutants) <= 0.05 * len(problems), [p["answer"] for p, m in zip(problems, mutants) if m]


def test_env_passes_check_env_and_scores_gold():
    env = gym.make("rftgym/PythonTests-v0")
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert "assert" in obs and "answer" not in obs.split("\n")[0]
    _, reward, terminated, truncated, info = env.step("```python\ndef f(x):\n    return x\n```")
    assert terminated and not truncated and reward == 0.0
    env.close()
