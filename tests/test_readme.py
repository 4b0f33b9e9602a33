"""The README's examples run, and its commands match what CI runs, so the README cannot rot.

Code blocks are found by the HTML comment ``<!-- test: NAME -->`` right before them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

import rftgym

ROOT = Path(rftgym.__file__).resolve().parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def block(name: str) -> str:
    """The fenced code block that follows ``<!-- test: name -->``."""
    match = re.search(rf"<!-- test: {re.escape(name)} -->\s*```\w*\n(.*?)```", README, re.S)
    assert match, f"README has no code block marked <!-- test: {name} -->"
    return match.group(1)


def test_plugin_example_loads_through_the_cli(tmp_path, run_cli):
    (tmp_path / "my_reward.py").write_text(block("plugin-example"))
    proc = run_cli("plugins", "--json", "--plugin", "my_reward.py", env={"RFTGYM_LOAD_PLUGINS": ""}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    info = plugins[str((tmp_path / "my_reward.py").resolve())]
    assert info["status"] == "ok" and info["rewards"] == ["my_reward"]


def test_plugin_example_reward_is_callable(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")
    path = tmp_path / "my_reward.py"
    path.write_text(block("plugin-example"))
    rftgym.load_plugins([str(path)])
    reward = rftgym.get_reward("my_reward")
    assert reward(["2+2=", "3+3="], ["4", "5"], answer=["4", "6"]) == [1.0, 0.0]
    assert reward(prompts=["1+1="], completions=["the answer is 2"], answer=[2]) == [1.0]


def test_plugin_example_train_command_validates(tmp_path, run_cli):
    (tmp_path / "my_reward.py").write_text(block("plugin-example"))
    assert "rftgym train --plugin my_reward.py --reward my_reward" in README
    proc = run_cli("train", "--plugin", "my_reward.py", "--reward", "my_reward", "--dry-run",
                   env={"RFTGYM_LOAD_PLUGINS": ""}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["rewards"] == [{"name": "my_reward", "weight": 1.0, "options": {}, "timeout": None}]


def test_in_process_example_runs(monkeypatch):
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")
    namespace: dict = {}
    exec(compile(block("in-process-example"), "README.md", "exec"), namespace)
    assert namespace["reward"](["p"], ["abcd"]) == [-0.04]


def test_readme_commands_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in ("pip install torch==2.13.0", 'pip install -e ".[dev]"', "python -m pytest -q"):
        assert command in README and command in ci, command


def test_env_example_runs():
    namespace: dict = {}
    exec(compile(block("env-example"), "README.md", "exec"), namespace)
    assert len(namespace["prompts"]) == 32 and namespace["rewards"].shape == (32,)


def _train_command_lines() -> list[str]:
    """Every ``rftgym train`` / ``torchrun … -m rftgym train`` line of the README's bash blocks."""
    lines = []
    for body in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if " -m rftgym train" in line:
                line = "rftgym train" + line.split(" -m rftgym train", 1)[1]
            if line.startswith("rftgym train"):
                lines.append(line)
    return lines


def test_every_train_command_in_the_readme_validates(tmp_path, run_cli):
    """GPU, multi-node and long commands are checked as far as parsing and validating them."""
    import shlex
    import shutil

    lines = _train_command_lines()
    assert len(lines) >= 10, lines
    (tmp_path / "my_run.yaml").write_text("{}\n")
    (tmp_path / "my_reward.py").write_text(block("plugin-example"))
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    # What the README's commands expect the user to have: their own data, train-rm's output.
    (tmp_path / "my_data").mkdir()
    for name in ("train.jsonl", "test.jsonl"):
        shutil.copy(ROOT / "examples" / "data" / "gsm8k_sample.jsonl", tmp_path / "my_data" / name)
    (tmp_path / "runs" / "reward-model" / "final").mkdir(parents=True)
    for line in lines:
        args = shlex.split(line)[2:]
        proc = run_cli("train", *args, "--dry-run", env={"RFTGYM_LOAD_PLUGINS": ""}, cwd=tmp_path)
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"


def _bash_lines(name: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in block(name).replace("\\\n", " ").splitlines()
            if line.split("#", 1)[0].strip()]


def test_reward_model_recipe_runs_as_written(tmp_path, run_cli):
    """The README's reward-model recipe, each command as written plus a short --max-steps."""
    import shlex
    import shutil

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    lines = _bash_lines("reward-model-recipe")
    assert [shlex.split(line)[:2] for line in lines] == [["rftgym", "train-rm"], ["rftgym", "train"]]
    short = {"train-rm": ["--max-steps", "20", "--set", "num_pairs=512", "--set", "eval_pairs=64", "--quiet"],
             "train": ["--max-steps", "2", "--quiet", "--set", "eval.every=0", "--set", "train.threads=1"]}
    for line in lines:
        args = shlex.split(line)[1:]
        proc = run_cli(*args, *short[args[0]], env={"RFTGYM_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"},
                       cwd=tmp_path)
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["step"] == 2
    assert (tmp_path / "runs" / "ppo-reward-model" / "final" / "config.json").is_file()


def test_readme_says_how_long_train_rm_takes():
    section = README.split("## A learned reward model", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"train-rm` runs 1,500 steps by default: about \d", section)
    assert "RM_TIME" not in README


def test_readme_shows_the_fast_test_subset():
    assert 'python -m pytest -q -m "not slow"' in README and "12 minutes" in README
