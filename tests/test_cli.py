"""The command line: help for every subcommand, ``train --dry-run``, and one-line errors."""
from __future__ import annotations

import importlib.metadata
import textwrap
from dataclasses import dataclass

import pytest
import yaml

import rftgym
from rftgym import cli
from rftgym.config import AlgoConfig

PUBLIC_FLAGS = {
    "train": ["--config", "--algo", "--env", "--reward", "--model", "--output-dir", "--max-steps",
              "--save-every", "--seed", "--device", "--resume", "--set", "--plugin", "--dry-run",
              "--strict-plugins", "--debug"],
    "train-rm": ["--data", "--model", "--output-dir", "--max-steps", "--set", "--plugin"],
    "eval": ["--model", "--env", "--reward", "--num-prompts", "--plugin"],
    "plugins": ["--json", "--plugin", "--strict-plugins", "--debug"],
    "plot": ["RUN_DIR", "-o"],
}

ALGO_AND_REWARD_PLUGIN = """
    from dataclasses import dataclass
    import rftgym
    from rftgym.config import AlgoConfig

    @dataclass
    class CliConfig(AlgoConfig):
        name: str = "cli_algo"
        beta: float = 0.0

    class CliAlgo:
        Config = CliConfig

    @rftgym.hookimpl
    def rftgym_register_algorithms(register):
        register("cli_algo", CliAlgo)

    @rftgym.hookimpl
    def rftgym_register_rewards(register):
        register("cli_reward", lambda prompts, completions, **kw: [1.0] * len(completions))
"""


@dataclass
class ToyConfig(AlgoConfig):
    name: str = "toy"
    beta: float = 0.04


@pytest.fixture
def toy(monkeypatch):
    """An algorithm and a reward registered in-process (independent of the shipped ones)."""
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")
    rftgym.register_algorithm("toy", type("Toy", (), {"Config": ToyConfig}))
    rftgym.register_reward("toy", lambda prompts, completions, **kw: [0.0] * len(completions))


def test_console_script_and_module_are_the_same_program():
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="rftgym")
    assert script.value == "rftgym.cli:main"


@pytest.mark.parametrize("command", [None, *PUBLIC_FLAGS])
def test_help_of_every_subcommand(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"] if command is None else [command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    expected = list(PUBLIC_FLAGS) if command is None else PUBLIC_FLAGS[command]
    missing = [flag for flag in expected if flag not in out]
    assert not missing, f"{command} --help lacks {missing}"


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: rftgym" in capsys.readouterr().out


def test_dry_run_prints_the_resolved_config(capsys, toy, tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train: {lr: 1e-6, max_steps: 50}\nseed: 1\nalgo: {name: toy}\n")
    assert cli.main(["train", "--dry-run", "--config", str(config_file), "--algo", "toy", "--reward", "toy:0.5",
                     "--max-steps", "3", "--save-every", "2", "--seed", "5", "--device", "cpu",
                     "--output-dir", str(tmp_path / "run"), "--model", "embedded", "--env", "rftgym/Arithmetic-v0",
                     "--resume", "--quiet", "--set", "train.lr=1e-4", "--set", "algo.beta=0.1"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    resolved = yaml.safe_load(captured.out)
    assert resolved["algo"] == {"name": "toy", "group_size": 1, "epochs": 1, "minibatches": 1, "beta": 0.1}
    assert resolved["rewards"] == [{"name": "toy", "weight": 0.5, "options": {}, "timeout": None}]
    assert resolved["train"]["lr"] == 1e-4 and resolved["train"]["max_steps"] == 3
    assert (resolved["seed"], resolved["save_every"], resolved["device"]) == (5, 2, "cpu")
    assert resolved["output_dir"] == str(tmp_path / "run") and resolved["resume"] is True
    assert resolved["logging"]["quiet"] is True and resolved["model"]["name_or_path"] == "embedded"


def test_set_wins_over_flags_which_win_over_the_file(capsys, toy, tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("algo: {name: toy}\nrewards: [{name: toy}]\ntrain: {max_steps: 50}\nseed: 1\n")
    assert cli.main(["train", "--dry-run", "--config", str(config_file), "--seed", "2",
                     "--max-steps", "3", "--set", "train.max_steps=4"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert (resolved["seed"], resolved["train"]["max_steps"]) == (2, 4)


def test_dry_run_with_plugin_file_in_subprocess(run_cli, tmp_path):
    (tmp_path / "cli_plugin.py").write_text(textwrap.dedent(ALGO_AND_REWARD_PLUGIN))
    proc = run_cli("train", "--dry-run", "--plugin", "cli_plugin.py", "--algo", "cli_algo",
                   "--reward", "cli_reward", "--set", "algo.beta=0.3", env={"RFTGYM_LOAD_PLUGINS": ""})
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["algo"]["name"] == "cli_algo" and resolved["algo"]["beta"] == 0.3
    assert resolved["plugins"] == ["cli_plugin.py"]


@pytest.mark.parametrize("argv, message", [
    (["train", "--dry-run", "--algo", "toy", "--reward", "toy", "--set", "train.lrr=1"],
     "unknown config key 'train.lrr'; did you mean 'train.lr'?"),
    (["train", "--dry-run", "--algo", "toy", "--reward", "toy", "--set", "train.max_steps=many"],
     "config key 'train.max_steps' = 'many' has the wrong type; expected int"),
    (["train", "--dry-run", "--algo", "toyy", "--reward", "toy"], "unknown algorithm 'toyy'; did you mean 'toy'?"),
    (["train", "--dry-run", "--algo", "toy", "--reward", "toy:heavy"], "the weight after ':' must be a number"),
    (["train", "--dry-run", "--config", "no/such.yaml"], "config file 'no/such.yaml' does not exist"),
    (["train", "--dry-run", "--algo", "toy", "--reward", "toy", "--set", "nokey"], "expected key.path=value"),
    (["plugins", "--plugin", "no_such_plugin_module"], "--plugin 'no_such_plugin_module' failed to import"),
])
def test_errors_are_one_line(capsys, toy, one_line_error, argv, message):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert message in one_line_error(captured.err) and captured.out == ""


def test_unexpected_exception_is_one_line_with_a_hint(capsys, monkeypatch, one_line_error):
    def boom(args):
        raise ValueError("something deep broke\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "plugins", boom)
    assert cli.main(["plugins"]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line == "rftgym: error: ValueError: something deep broke (run with --debug for the traceback)"


def test_debug_reraises_in_process(monkeypatch, toy):
    from rftgym.errors import ConfigError

    with pytest.raises(ConfigError, match="train.lrr"):
        cli.main(["train", "--dry-run", "--debug", "--algo", "toy", "--reward", "toy", "--set", "train.lrr=1"])


@pytest.mark.parametrize("argv, message", [
    (["train", "--max-steps", "x"], "argument --max-steps: invalid int value: 'x'"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["train", "--dry-run", "--set", "train.lrr=1"], "unknown config key 'train.lrr'"),
])
def test_cli_errors_in_subprocess(run_cli, one_line_error, argv, message):
    proc = run_cli(*argv, env={"RFTGYM_LOAD_PLUGINS": ""})
    assert proc.returncode == 2 and proc.stdout == ""
    assert message in one_line_error(proc.stderr)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(run_cli, how):
    args, env = (["--debug"], {}) if how == "flag" else ([], {"RFTGYM_DEBUG": "1"})
    proc = run_cli("plugins", "--plugin", "no_such_plugin_module", *args, env={"RFTGYM_LOAD_PLUGINS": "", **env})
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr and "PluginError" in proc.stderr


def test_eval_passes_reward_options(capsys, monkeypatch, one_line_error):
    import json

    seen = []

    def fake_evaluate(model, env_id, rewards, **kwargs):
        seen.append(rewards)
        return {"model": model, "eval/reward": 0.0}

    monkeypatch.setattr("rftgym.runner.evaluate.evaluate_model", fake_evaluate)
    argv = ["eval", "--model", "embedded", "--reward", "math", "--reward", "reward_model:0.5",
            "--reward-option", "reward_model.path=runs/rm/final", "--reward-option", "reward_model.normalize=false"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["eval/reward"] == 0.0
    assert seen == [[{"name": "math"},
                     {"name": "reward_model", "weight": 0.5, "options": {"path": "runs/rm/final", "normalize": False}}]]
    for bad in ("length.max_length=3", "reward_model=3", "reward_model.path"):
        assert cli.main([*argv[:7], "--reward-option", bad]) == 2
        message = one_line_error(capsys.readouterr().err)
        assert f"--reward-option {bad!r}: expected NAME.KEY=VALUE" in message and "math, reward_model" in message
