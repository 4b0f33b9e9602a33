"""The example plugin's own tests: its reward, its env, and that rftgym finds both by name."""
from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rftgym
from rftgym_example_plugin import PARITY_ID
from rftgym_example_plugin.parity import ParityTask
from rftgym_example_plugin.rewards import BrevityReward


def test_brevity_prefers_short_correct_answers():
    reward = BrevityReward(scale=10)
    scores = reward(prompts=["p"] * 4, completions=["42", "it is 42", "43", "420"], answer=["42"] * 4)
    assert scores[0] == 1.0
    assert scores[1] == pytest.approx(1 / (1 + 6 / 10))
    assert scores[2] == 0.0 and scores[3] == 0.0  # wrong, and "42" inside "420" is not the answer
    assert reward(prompts=["p"], completions=["x"]) == [None]  # no gold answer: not applicable


def test_rftgym_finds_the_plugin_by_name():
    rftgym.load_plugins(["rftgym_example_plugin"])  # also what the entry point does once installed
    reward = rftgym.get_reward("brevity", scale=5)
    assert reward(["p"], ["7"], answer=["7"]) == [1.0]
    with pytest.raises(rftgym.errors.ConfigError, match="no option 'scal'"):
        rftgym.get_reward("brevity", scal=5)
    assert PARITY_ID in gymnasium.envs.registry


def test_parity_task_splits_are_disjoint_and_deterministic():
    train, test = ParityTask(split="train"), ParityTask(split="test")
    train_bits = {row["bits"] for row in train}
    test_bits = {row["bits"] for row in test}
    assert train_bits and test_bits and not train_bits & test_bits
    assert len(train_bits | test_bits) == 2 ** 6
    a = train.sample(np.random.default_rng(3))
    assert a == train.sample(np.random.default_rng(3))
    assert a["answer"] == str(a["bits"].count("1") % 2)


def test_parity_env_is_a_gymnasium_bandit():
    rftgym.load_plugins(["rftgym_example_plugin"])
    env = rftgym.make(PARITY_ID, n_bits=4)
    check_env(env.unwrapped)
    prompt, info = env.reset(seed=0)
    bits = info["row"]["bits"]
    assert prompt == f"parity {bits}=" and "answer" not in prompt
    _, reward, terminated, truncated, info = env.step(str(bits.count("1") % 2))
    assert reward == 1.0 and terminated and not truncated and info["correct"] is True
    env.close()


def test_parity_vector_env_groups_with_the_brevity_reward():
    rftgym.load_plugins(["rftgym_example_plugin"])
    vec = rftgym.make_vec(PARITY_ID, num_envs=8, group_size=4, reward="brevity")
    prompts, info = vec.reset(seed=1)
    assert prompts[:4] == (prompts[0],) * 4 and info["group_id"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    gold = info["columns"]["answer"]
    completions = [gold[0], f"so {gold[1]}", "2", gold[3]] * 2
    _, rewards, terminated, _, info = vec.step(completions)
    assert rewards.tolist() == pytest.approx([1.0, 1 / 1.3, 0.0, 1.0] * 2)
    assert terminated.all() and set(info["scored"]["per_reward"]) == {"brevity"}
    vec.close()
