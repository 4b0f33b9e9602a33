"""The composition root (runner/build.py): names resolve once, before any model loads, and the
parts it builds share what they should (one check reward, eval's frozen reward state)."""
from __future__ import annotations

import pytest

import rftgym
from rftgym.config import RunConfig
from rftgym.errors import UnknownNameError
from rftgym.rewards.pipeline import RewardPipeline
from rftgym.runner import build


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model is a test failure: names must fail first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the names were checked")

    monkeypatch.setattr("rftgym.runner.models.load_policy", refuse)


@pytest.mark.parametrize("field, value, message", [
    ("reward", "mathh", r"unknown reward 'mathh'; did you mean 'math'\?"),
    ("env", "rftgym/Arithmetc-v0", r"unknown env 'rftgym/Arithmetc-v0'; did you mean 'rftgym/Arithmetic-v0'\?"),
    ("algo", "grpoo", r"unknown algorithm 'grpoo'; did you mean 'grpo'\?"),
])
def test_unknown_names_fail_in_the_root_before_any_model_loads(tmp_path, no_model, field, value, message):
    data = {"output_dir": str(tmp_path / "run")}
    data.update({"reward": {"rewards": [{"name": value}]}, "env": {"env": {"id": value}},
                 "algo": {"algo": {"name": value}}}[field])
    with pytest.raises(UnknownNameError, match=message):
        build.resolve_config(data)
    with pytest.raises(UnknownNameError, match=message):
        rftgym.train(data)
    assert not (tmp_path / "run").exists()


def test_a_prebuilt_config_with_an_unknown_reward_fails_before_the_run_directory(tmp_path, no_model):
    config = RunConfig(output_dir=str(tmp_path / "run"))
    config.rewards[0].name = "nope"
    with pytest.raises(UnknownNameError, match="unknown reward 'nope'"):
        rftgym.train(config)
    assert not (tmp_path / "run").exists()


def test_config_without_a_resolver_is_pure_data():
    from rftgym.config import AlgoConfig, build_config
    from rftgym.config.resolver import install_resolver, installed_resolver

    saved = installed_resolver()
    install_resolver(None)
    try:
        config = build_config({"rewards": [{"name": "not-registered"}]})
        assert type(config.algo) is AlgoConfig and config.rewards[0].name == "not-registered"
    finally:
        install_resolver(saved)
    assert type(build_config({}).algo).__name__ == "GRPOConfig"  # the package installs the root's resolver


class Counting:
    """A stateful reward (like a normalising reward model): every call moves its state."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, prompts, completions, **columns):
        self.seen += len(completions)
        return [float(self.seen)] * len(completions)

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def test_the_frozen_view_shares_the_rewards_but_never_moves_their_state():
    rftgym.register_reward("counting", Counting)
    pipeline = RewardPipeline(["counting"])
    pipeline(["p"], ["a"])
    assert pipeline.state_dict() == {"counting": {"seen": 1}}
    frozen = pipeline.frozen()
    assert frozen.rewards["counting"] is pipeline.rewards["counting"]
    assert list(frozen(["p", "p"], ["a", "b"]).total) == [3.0, 3.0]  # scored with the live state
    assert pipeline.state_dict() == {"counting": {"seen": 1}}  # ... which evaluation leaves as it was
    frozen.close()  # owns nothing
    assert pipeline.rewards["counting"]._impl is not None
    pipeline.close()


def test_envs_share_one_check_reward_and_eval_scores_through_a_frozen_view(tmp_path):
    config = build.resolve_config({"rewards": [{"name": "format"}], "eval": {"every": 1, "num_prompts": 4}})
    envs = build.build_envs(config, num_prompts=2, group_size=2, with_eval=True)
    try:
        assert envs.train.scorer.check == envs.eval.scorer.check == "math"  # math is not a trained reward
        assert envs.checks("math") is envs.checks("math")
        assert envs.eval.scorer.pipeline._frozen and not envs.train.scorer.pipeline._frozen
        assert envs.eval.scorer.pipeline.rewards["format"] is envs.train.scorer.pipeline.rewards["format"]
        obs, _ = envs.train.reset(seed=0)
        _, _, _, _, info = envs.train.step(["1"] * 4)
        envs.eval.reset(seed=0)
        envs.eval.step(["1"] * 4)
        assert envs.train.scorer._check_fn is envs.eval.scorer._check_fn is envs.checks("math")
    finally:
        envs.close()


def test_a_check_that_is_a_trained_reward_reuses_the_pipelines_object():
    config = build.resolve_config({"rewards": [{"name": "math"}]})
    pipeline = build.build_pipeline(config)
    assert build.SharedRewards(pipeline)("math") is pipeline.rewards["math"]
    pipeline.close()


def test_the_env_keeps_its_system_prompt_for_the_policy():
    """The trainer hands ``env.system_prompt`` to the Policy (runner/trainer.py ``_wire_models``)."""
    from rftgym.envs.registry import make_vec

    env = make_vec("rftgym/Arithmetic-v0", num_envs=2, group_size=1, reward=lambda prompts, completions, **c: [0.0] * 2,
                   check=None, system_prompt="Answer with a number.")
    try:
        assert env.system_prompt == "Answer with a number."
    finally:
        env.close()


def test_a_data_only_algo_section_becomes_the_algorithms_own_config():
    from rftgym.config import AlgoConfig

    config = RunConfig()
    config.algo = AlgoConfig(name="grpo", group_size=3)
    algorithm = build.build_algorithm(config)
    assert type(config.algo).__name__ == "GRPOConfig" and config.algo.group_size == 3
    assert algorithm.group_size == 3


@pytest.mark.parametrize("name, estimator", [("grpo", "grpo"), ("rloo", "rloo"), ("ppo", "gae"),
                                             ("reinforce", "reinforce"), ("dapo", "grpo")])
def test_the_root_resolves_the_advantage_estimator_the_leaf_does_not(monkeypatch, name, estimator):
    from rftgym.algos import advantages
    from rftgym.config import build_config

    def leaf_resolves(_name):
        raise AssertionError("the algorithm resolved its estimator by name itself")

    monkeypatch.setattr(advantages, "resolve", leaf_resolves)
    algorithm = build.build_algorithm(build_config({"algo": {"name": name}}))
    assert algorithm.estimator.__name__ == estimator
