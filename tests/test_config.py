"""The run config: YAML, ``--set`` overrides, and validation errors that name the culprit.

An algorithm registered here (``toy``, with its own Config) keeps these tests independent of
the shipped algorithms; a second one (``plain``) uses the bare AlgoConfig.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest
import yaml

import rftgym
from rftgym.config import (AlgoConfig, RunConfig, apply_override, build_config, check, dump_yaml,
                           parse_override, to_dict)
from rftgym.errors import ConfigError, PluginError, UnknownNameError


@dataclass
class ToyConfig(AlgoConfig):
    """A GRPO-like config: two extra hyper-parameters with their own range check."""

    name: str = "toy"
    group_size: int = 4
    beta: float = 0.04
    clip_low: float = 0.2

    def validate(self) -> None:
        super().validate()
        check(self.beta >= 0, "algo.beta", self.beta, "a number >= 0")


class Toy:
    Config = ToyConfig


class Plain:
    Config = AlgoConfig


def toy_reward(prompts, completions, scale=1.0, **columns):
    return [scale * len(c) for c in completions]


class ToyClassReward:
    """A class reward: its options are its constructor's arguments, checked by name."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, prompts, completions, **columns):
        return [self.scale * len(c) for c in completions]


@pytest.fixture(autouse=True)
def toy_names(fresh_manager, monkeypatch):
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")
    rftgym.register_algorithm("toy", Toy)
    rftgym.register_algorithm("plain", Plain)
    rftgym.register_reward("toy", toy_reward)
    rftgym.register_reward("toy_cls", ToyClassReward)


BASE = {"algo": {"name": "toy"}, "rewards": [{"name": "toy"}]}


def build(*overrides: str, base: dict | None = None) -> RunConfig:
    return build_config(base if base is not None else BASE, list(overrides))


# -- loading and overriding -----------------------------------------------------------------------

def test_yaml_file_loads_typed(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent("""
        algo: {name: toy, beta: 0.1, group_size: 8}
        rewards:
          - {name: toy, weight: 2, options: {scale: 0.5}}
        train: {lr: 1e-5, max_steps: 10}
        env: {kwargs: {digits: 3}}
        seed: 7
    """))
    config = build_config(path)
    assert isinstance(config.algo, ToyConfig)
    assert (config.algo.beta, config.algo.group_size, config.algo.clip_low) == (0.1, 8, 0.2)
    assert config.train.lr == 1e-5 and isinstance(config.train.lr, float)  # YAML 1.1 reads 1e-5 as a string
    assert config.rewards[0].weight == 2.0 and isinstance(config.rewards[0].weight, float)
    assert config.rewards[0].options == {"scale": 0.5}
    assert config.env.kwargs == {"digits": 3} and config.env.eval_kwargs == {"split": "test"}
    assert config.seed == 7 and config.train.max_steps == 10


def test_set_overrides_are_typed():
    config = build("train.lr=1e-4", "algo.name=plain", "rewards.0.weight=0.5", "logging.quiet=true",
                   "env.kwargs.ops=[+, -]", "model.critic=null")
    assert config.train.lr == 1e-4 and isinstance(config.train.lr, float)
    assert type(config.algo) is AlgoConfig and config.algo.name == "plain"
    assert config.rewards[0].weight == 0.5 and config.logging.quiet is True
    assert config.env.kwargs == {"ops": ["+", "-"]} and config.model.critic is None


def test_switching_algorithm_by_name_drops_the_old_algorithms_own_keys_with_a_warning():
    base = {"algo": {"name": "toy", "beta": 0.1, "group_size": 8}, "rewards": [{"name": "toy"}]}
    with pytest.warns(UserWarning, match=r"switched from 'toy' to 'plain': dropped the config's algo.beta=0.1"):
        config = build("algo.name=plain", base=base)
    assert type(config.algo) is AlgoConfig and config.algo.group_size == 8  # shared keys are kept
    # a key the user sets on the command line is never dropped, and a typo without a switch still fails
    with pytest.raises(ConfigError, match="unknown config key 'algo.beta'"):
        build("algo.name=plain", "algo.beta=0.2", base=base)
    with pytest.raises(ConfigError, match="unknown config key 'algo.betta'"):
        build(base={"algo": {"name": "toy", "betta": 0.1}, "rewards": [{"name": "toy"}]})


def test_later_override_wins_and_flag_values_apply_first():
    config = build_config(BASE, ["train.max_steps=5", "train.max_steps=6"], {"train.max_steps": 3, "seed": 9})
    assert config.train.max_steps == 6 and config.seed == 9


def test_overrides_edit_the_defaults_not_replace_them():
    defaults = to_dict(RunConfig())
    data: dict = {}
    apply_override(data, ["rewards", "0", "weight"], 0.5, defaults)
    apply_override(data, ["env", "eval_kwargs", "digits"], 3, defaults)
    assert data["rewards"] == [{"name": "math", "weight": 0.5, "options": {}, "timeout": None}]
    assert data["env"]["eval_kwargs"] == {"split": "test", "digits": 3}
    assert defaults["rewards"][0]["weight"] == 1.0  # the default tree itself is untouched


def test_override_index_appends_one_past_the_end():
    config = build("rewards.1.name=toy", "rewards.1.weight=0")
    assert [(r.name, r.weight) for r in config.rewards] == [("toy", 1.0), ("toy", 0.0)]
    with pytest.raises(ConfigError, match=r"'rewards.5.weight': '5' is not an index of a list of 1"):
        build("rewards.5.weight=1")


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=1e-4") == (["a", "b"], "1e-4")  # float fields coerce it
    assert parse_override("x=[1, 2]") == (["x"], [1, 2])
    assert parse_override("x=") == (["x"], "")
    assert parse_override("x=a=b") == (["x"], "a=b")
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_override("train.lr")


def test_dump_yaml_round_trips():
    config = build("algo.beta=0.5", "train.lr=3e-4", "env.kwargs.digits=2")
    again = build_config(yaml.safe_load(dump_yaml(config)))
    assert again == config


# -- validation errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", r"unknown config key 'train.lrr'; did you mean 'train.lr'\? valid keys here: max_steps, lr,"),
    ("trian.lr=1", r"unknown config key 'trian'; did you mean 'train'\?"),
    ("algo.betaa=1", r"unknown config key 'algo.betaa'; did you mean 'algo.beta'\?"),
    ("rewards.0.wieght=1", r"unknown config key 'rewards\[0\].wieght'; did you mean 'rewards\[0\].weight'\?"),
])
def test_unknown_key_names_the_closest(override, message):
    with pytest.raises(ConfigError, match=message):
        build(override)


@pytest.mark.parametrize("override, message", [
    ("train.max_steps=abc", r"config key 'train.max_steps' = 'abc' has the wrong type; expected int"),
    ("train.max_steps=1.5", r"'train.max_steps' = 1.5 has the wrong type; expected int"),
    ("train.lr=fast", r"'train.lr' = 'fast' has the wrong type; expected float"),
    ("logging.quiet=maybe", r"'logging.quiet' = 'maybe' has the wrong type; expected bool"),
    ("env.kwargs=3", r"'env.kwargs' = 3 has the wrong type; expected a mapping"),
    ("train=3", r"'train' = 3 has the wrong type; expected a mapping"),
    ("rewards=toy", r"'rewards' = 'toy' has the wrong type; expected a list of a mapping"),
    ("train.lr_schedule=cosin", r"'train.lr_schedule' = 'cosin' is invalid; expected one of 'constant', 'cosine'"),
    ("train.lr.x=1", r"'train.lr.x': 'train.lr' is a value, not a section"),
])
def test_wrong_type_names_key_value_and_expected_type(override, message):
    with pytest.raises(ConfigError, match=message):
        build(override)


@pytest.mark.parametrize("override, message", [
    ("train.lr=-1", r"'train.lr' = -1.0 is invalid; expected a number in \(0, 1\]"),
    ("rollout.top_p=1.5", r"'rollout.top_p' = 1.5 is invalid; expected a number in \(0, 1\]"),
    ("algo.group_size=0", r"'algo.group_size' = 0 is invalid; expected an integer >= 1"),
    ("algo.beta=-0.1", r"'algo.beta' = -0.1 is invalid; expected a number >= 0"),
    ("rewards.0.weight=0", r"'rewards' = \['toy'\] is invalid; expected at least one reward with a non-zero weight"),
    ("keep_checkpoints=0", r"'keep_checkpoints' = 0 is invalid"),
])
def test_out_of_range_values(override, message):
    with pytest.raises(ConfigError, match=message):
        build(override)


def test_algorithm_keys_follow_the_chosen_algorithm():
    assert build("algo.beta=0.2").algo.beta == 0.2
    assert build().algo.group_size == 4  # the algorithm's own default, not AlgoConfig's
    with pytest.raises(ConfigError, match=r"unknown config key 'algo.beta'.*valid keys here: name, group_size"):
        build("algo.name=plain", "algo.beta=0.2")


def test_unknown_algorithm_reward_and_env_fail_at_config_time():
    with pytest.raises(UnknownNameError, match=r"unknown algorithm 'tyo'; did you mean 'toy'\?"):
        build("algo.name=tyo")
    with pytest.raises(UnknownNameError, match=r"unknown reward 'toyy'; did you mean 'toy'\?"):
        build("rewards.0.name=toyy")
    with pytest.raises(UnknownNameError, match=r"unknown env 'rftgym/Arith-v0'"):
        build("env.id=rftgym/Arith-v0")


def test_unknown_reward_option_fails_at_config_time():
    assert build("rewards.0.name=toy_cls", "rewards.0.options.scale=2").rewards[0].options == {"scale": 2}
    with pytest.raises(ConfigError, match=r"reward 'toy_cls' has no option 'scal'; did you mean 'scale'\?"):
        build("rewards.0.name=toy_cls", "rewards.0.options.scal=2")


def test_algorithm_config_must_subclass_algo_config():
    @dataclass
    class Loose:
        name: str = "loose"

    rftgym.register_algorithm("loose", type("LooseAlgo", (), {"Config": Loose}))
    with pytest.raises(PluginError, match="algorithm 'loose': its Config must be a dataclass subclassing"):
        build("algo.name=loose")


def test_plugins_listed_in_the_config_load_before_validation(tmp_path):
    plugin = tmp_path / "algo_plugin.py"
    plugin.write_text(textwrap.dedent("""
        from dataclasses import dataclass
        import rftgym
        from rftgym.config import AlgoConfig

        @dataclass
        class FileConfig(AlgoConfig):
            name: str = "from_file"
            tau: float = 1.0

        class FromFile:
            Config = FileConfig

        @rftgym.hookimpl
        def rftgym_register_algorithms(register):
            register("from_file", FromFile)
    """))
    config = build_config({**BASE, "plugins": [str(plugin)], "algo": {"name": "from_file", "tau": 0.5}})
    assert config.algo.tau == 0.5 and config.plugins == [str(plugin)]


@pytest.mark.parametrize("content, message", [
    (None, r"config file '.*missing.yaml' does not exist"),
    ("train: [unclosed", r"config file '.*' is not valid YAML at line 1, column \d+: "),
    ("- a\n- b\n", r"config file '.*' must hold a mapping at the top level"),
])
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "missing.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        build_config(path)
