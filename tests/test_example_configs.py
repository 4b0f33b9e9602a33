"""Every shipped example config resolves, and swapping its algorithm by name keeps it valid."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

import rftgym
from rftgym.runner.build import resolve_config

# ppo_reward_model.yaml names a reward model trained first (runs/reward-model/final); its
# missing-path error is tested in test_papercuts.py
CONFIGS = sorted(p for p in (Path(rftgym.__file__).parent / "examples" / "configs").glob("*.yaml")
                 if p.stem != "ppo_reward_model")


def test_the_examples_are_found():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("algo", [None, "grpo", "ppo", "rloo"])
def test_an_example_config_resolves_under_any_algorithm(path, algo):
    values = {"algo.name": algo} if algo else {}
    if algo in ("grpo", "rloo") and yaml.safe_load(path.read_text())["algo"].get("group_size", 8) < 2:
        values["algo.group_size"] = 4  # PPO's one completion per prompt is no group (a clear error otherwise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the dropped keys of the config's own algorithm
        config = resolve_config(str(path), None, values)
    assert config.algo.name == (algo or config.algo.name)
    if algo == "ppo":
        assert hasattr(config.algo, "kl_coef") and not hasattr(config.algo, "beta")
