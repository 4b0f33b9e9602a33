"""What a new user hit (issue 20): each case fails without its fix.

In-process runs use the tiny random model of ``runner_fixtures``; CLI cases run ``python -m
rftgym`` and check the one line the user sees.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import rftgym
from rftgym.errors import RftgymError

from runner_fixtures import build_tiny_model_dir, read_jsonl, run_config, write_prompt_file

QUIET_ENV = {"RFTGYM_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("papercuts")
    return build_tiny_model_dir(root / "model"), write_prompt_file(root / "prompts.jsonl")


def _error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("rftgym: error:"), proc.stderr
    return lines[0]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


# -- the unit of a run: one rollout ----------------------------------------------------------------

def test_ppo_max_steps_counts_rollouts_and_logs_optimizer_steps(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "ppo"
    rftgym.train(run_config(model_dir, data, out, **{"algo": {"name": "ppo", "epochs": 2, "minibatches": 2},
                                                     "train.max_steps": 3, "save_every": 0, "eval.every": 0}))
    lines = [r for r in read_jsonl(out / "metrics.jsonl") if "eval/reward" not in r]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert [r["optimizer_steps"] for r in lines] == [4, 8, 12]
    state = json.loads((out / "checkpoints" / "step-3" / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["optimizer_steps"] == 12


def test_warmup_counts_steps_not_optimizer_steps(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "warm"
    rftgym.train(run_config(model_dir, data, out, **{"algo": {"name": "ppo", "epochs": 2, "minibatches": 2},
                                                     "train.max_steps": 2, "train.warmup_steps": 2,
                                                     "save_every": 0, "eval.every": 0}))
    lines = [r for r in read_jsonl(out / "metrics.jsonl") if "eval/reward" not in r]
    assert [round(r["lr"] / 1e-3, 6) for r in lines] == [0.5, 1.0]


# -- SIGTERM: stop before the update, resume exactly ---------------------------------------------

def test_stop_after_sampling_drops_the_rollout_and_resumes_exactly(assets, tmp_path, monkeypatch):
    from rftgym.runner import trainer as trainer_mod

    model_dir, data = assets
    overrides = {"train.max_steps": 4, "save_every": 0, "seed": 3, "eval.every": 0}
    ref = tmp_path / "ref"
    rftgym.train(run_config(model_dir, data, ref, **overrides))

    out = tmp_path / "stopped"
    real_collect = trainer_mod.Trainer.collect

    def collect_then_signal(self, obs):
        result = real_collect(self, obs)
        if self._step == 2:  # the signal lands while the third rollout is sampled
            self._stop_signal = "SIGTERM"
        return result

    monkeypatch.setattr(trainer_mod.Trainer, "collect", collect_then_signal)
    with pytest.raises(SystemExit) as stop:
        rftgym.train(run_config(model_dir, data, out, **overrides))
    assert stop.value.code == 130
    assert json.loads((out / "checkpoints" / "step-2" / "trainer_state.json").read_text())["step"] == 2
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]  # no third update happened
    monkeypatch.setattr(trainer_mod.Trainer, "collect", real_collect)
    rftgym.train(run_config(model_dir, data, out, **overrides, resume=True))
    a, b = _weights(ref / "final"), _weights(out / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith(("time/", "tokens_per_s", "memory/"))}
                          for r in rows]
    assert strip(read_jsonl(out / "metrics.jsonl")) == strip(read_jsonl(ref / "metrics.jsonl"))


def test_stop_between_micro_batches_applies_nothing(assets, tmp_path, monkeypatch):
    from rftgym.runner import update as update_mod

    model_dir, data = assets
    out = tmp_path / "micro"
    real = update_mod.completion_logprobs
    calls = {"n": 0}

    def forward_then_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # during the first micro-batch of the first update
            trainer_self = sys._getframe(1).f_locals["self"]
            trainer_self._stop_signal = "SIGTERM"
        return real(*args, **kwargs)

    monkeypatch.setattr(update_mod, "completion_logprobs", forward_then_signal)
    with pytest.raises(SystemExit):
        rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 3, "save_every": 0, "eval.every": 0,
                                                         "train.micro_batch_size": 2}))
    state = json.loads((out / "checkpoints" / "step-0" / "trainer_state.json").read_text())
    assert state["step"] == 0 and state["optimizer_steps"] == 0
    assert not (out / "metrics.jsonl").exists() or read_jsonl(out / "metrics.jsonl") == []


# -- disk ------------------------------------------------------------------------------------------

def test_save_last_false_writes_no_checkpoint(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "nolast"
    rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 2, "save_every": 0, "save_last": False}))
    assert (out / "final" / "model.safetensors").is_file()
    assert not list((out / "checkpoints").glob("step-*")) if (out / "checkpoints").exists() else True


# -- what the model saw, no learning signal, no applicable reward -----------------------------------

def test_samples_log_the_text_the_model_was_given(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "sys"
    config = run_config(model_dir, data, out, **{"train.max_steps": 1, "eval.every": 0})
    config["env"]["kwargs"]["system_prompt"] = "Add the numbers."
    config["model"]["chat_template"] = True
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.chat_template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] "
    tok.save_pretrained(tmp_path / "model_with_template")
    import shutil

    for f in model_dir.iterdir():
        if not (tmp_path / "model_with_template" / f.name).exists():
            shutil.copy(f, tmp_path / "model_with_template" / f.name)
    config["model"]["name_or_path"] = str(tmp_path / "model_with_template")
    rftgym.train(config)
    row = read_jsonl(out / "samples.jsonl")[0]
    assert row["model_input"].startswith("[system] Add the numbers.\n[user] ")
    assert row["prompt"] in row["model_input"] and row["model_input"].endswith("[assistant] ")


def test_no_learning_signal_warns_once(assets, tmp_path, monkeypatch, capsys):
    from rftgym.runner import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "STALE_STEPS", 2)
    model_dir, data = assets
    out = tmp_path / "flat"
    config = run_config(model_dir, data, out, **{"train.max_steps": 4, "eval.every": 0, "save_every": 0})
    config["rewards"] = [{"name": "exact_match"}]  # all 0 on a random model: every advantage is 0
    rftgym.train(config)
    err = capsys.readouterr().err
    assert err.count("no learning signal") == 1 and "reward/*/mean" in err


def test_no_applicable_reward_stops_with_an_error(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "noanswer"
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": f"{i}+1="}) + "\n" for i in range(10)))
    config = run_config(model_dir, questions, out, **{"train.max_steps": 2, "eval.every": 0})
    config["env"]["kwargs"]["answer_column"] = None
    config["rewards"] = [{"name": "math"}]
    with pytest.raises(RftgymError, match="no sample of the first rollout had an applicable reward"):
        rftgym.train(config)
    assert not out.exists()  # the failed start left nothing behind


def test_eval_never_counts_a_row_twice(assets, tmp_path, capsys):
    model_dir, data = assets
    small = write_prompt_file(tmp_path / "five.jsonl", n=5)
    out = tmp_path / "evalcap"
    config = run_config(model_dir, data, out, **{"train.max_steps": 1, "eval.every": 1, "eval.num_prompts": 20})
    config["env"]["eval_kwargs"] = {"data_files": str(small)}
    rftgym.train(config)
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if "eval/reward" in r]
    assert evals and all(r["eval/num_prompts"] == 5 for r in evals)
    assert "has 5 rows" in capsys.readouterr().err


# -- failed starts and resume ----------------------------------------------------------------------

def test_failed_first_eval_leaves_nothing_and_rerun_works(assets, tmp_path):
    model_dir, data = assets
    calls = {"n": 0}

    @rftgym.register_reward("papercut_flaky")
    def flaky(prompts, completions, **columns):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("broken on first call")
        return [0.0] * len(completions)

    out = tmp_path / "flaky"
    config = run_config(model_dir, data, out, **{"train.max_steps": 1, "eval.every": 1})
    config["rewards"] = [{"name": "papercut_flaky"}]
    with pytest.raises(Exception, match="broken on first call"):
        rftgym.train(config)
    assert not (out / "config.yaml").exists()
    rftgym.train(config)  # the same command again: no "already holds a run"
    assert (out / "final").is_dir()


def test_resume_refuses_another_algorithm_and_changes_nothing(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "grpo-run"
    rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 1, "eval.every": 0}))
    before = (out / "config.yaml").read_text()
    with pytest.raises(RftgymError, match=r"algo\.name: 'grpo' -> 'ppo'"):
        rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 2, "eval.every": 0, "resume": True,
                                                         "algo": {"name": "ppo"}}))
    assert (out / "config.yaml").read_text() == before
    # what may change on resume still may: a longer run
    rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 2, "eval.every": 0, "resume": True}))


def test_resume_refuses_a_directory_that_does_not_exist(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "typo"
    with pytest.raises(RftgymError, match="does not exist"):
        rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 1, "resume": True}))
    assert not out.exists()


# -- found by --dry-run, before anything loads ---------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--set", "env.kwargs.digitz=3"], "no option 'digitz'; did you mean 'digits'"),
    (["--set", "env.kwargs.digits=0"], "env.kwargs"),
    (["--env", "rftgym/PromptDataset-v0", "--set", "env.kwargs.data_files=nope.jsonl"], "'nope.jsonl' does not exist"),
    (["--env", "rftgym/PromptDataset-v0", "--set", "env.kwargs.data_files=d.jsonl",
      "--set", "env.kwargs.prompt_colum=q"], "did you mean 'prompt_column'"),
    (["--seed", "-1"], "'seed' = -1"),
    (["--set", "train.lr=1e30"], "'train.lr' = 1e+30"),
    (["--model", "./no_such_model"], "no such directory"),
    (["--set", "algo.advantage=rlooo"], "did you mean 'rloo'"),
    (["--reward", "reward_model", "--set", "rewards.0.options.path=runs/nothing/final"],
     "reward model path 'runs/nothing/final' does not exist; train one with: rftgym train-rm --output-dir runs/nothing"),
])
def test_dry_run_finds_what_a_real_start_would_hit(tmp_path, run_cli, args, expected):
    (tmp_path / "d.jsonl").write_text('{"q": "1+1=", "answer": "2"}\n')
    line = _error(run_cli("train", "--dry-run", *args, env=QUIET_ENV, cwd=tmp_path))
    assert expected in line, line


def test_dry_run_accepts_the_reward_model_recipe_once_trained(tmp_path, run_cli):
    import shutil

    shutil.copytree(Path(rftgym.__file__).parent / "examples", tmp_path / "examples")
    args = ("train", "--config", "examples/configs/ppo_reward_model.yaml", "--dry-run")
    assert "runs/reward-model" in _error(run_cli(*args, env=QUIET_ENV, cwd=tmp_path))
    (tmp_path / "runs" / "reward-model" / "final").mkdir(parents=True)
    assert run_cli(*args, env=QUIET_ENV, cwd=tmp_path).returncode == 0


def test_bad_env_value_in_a_real_start_is_a_config_error(assets, tmp_path):
    from rftgym.runner import build

    config = build.resolve_config(None, ["env.kwargs.digits=2"])
    config.env.kwargs["digits"] = 0  # past the dry-run checks, as a Python caller could
    with pytest.raises(RftgymError, match="refused"):
        build.build_envs(config, 2, 2, with_eval=False)


# -- command line ----------------------------------------------------------------------------------

def test_eval_rejects_bad_numbers_and_missing_model(run_cli, tmp_path):
    assert "--num-prompts 0" in _error(run_cli("eval", "--model", "embedded", "--num-prompts", "0", env=QUIET_ENV))
    assert "no such directory" in _error(run_cli("eval", "--model", "./nope", env=QUIET_ENV))


def test_plot_accepts_debug_and_errors_have_one_prefix(run_cli, tmp_path):
    proc = run_cli("plot", str(tmp_path / "missing"), "--debug", env=QUIET_ENV)
    assert "unrecognized" not in proc.stderr and "does not exist" in proc.stderr, proc.stderr
    line = _error(run_cli("--no-such-flag", env=QUIET_ENV))
    assert line.count("rftgym") == 2 and not line.startswith("rftgym: error: rftgym:"), line


def test_plugins_json_into_a_closed_pipe(tmp_path):
    cmd = f"{sys.executable} -m rftgym plugins --json | head -c 10"
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True,
                          env={**__import__("os").environ, **QUIET_ENV})
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_help_texts(run_cli):
    from rftgym.cli import build_parser

    parser = build_parser()
    subs = parser._subparsers._group_actions[0].choices
    for name in ("train", "train-rm", "eval"):
        assert subs[name].description, name
        for action in subs[name]._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings}"
    assert "algo.beta" not in subs["train-rm"].format_help()
    assert "one rollout" in subs["train"].format_help()


def test_quiet_shows_no_library_progress_bars(assets, tmp_path, run_cli):
    model_dir, data = assets
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(run_config(model_dir, data, tmp_path / "q", **{"train.max_steps": 1,
                                                                              "eval.every": 0})))
    proc = run_cli("train", "--config", str(cfg), "--quiet", env=QUIET_ENV)
    assert proc.returncode == 0, proc.stderr
    assert "%|" not in proc.stderr and "Loading" not in proc.stderr, proc.stderr


def test_plugin_name_shadowed_by_a_local_file_is_refused(tmp_path, run_cli):
    elsewhere = tmp_path / "site"
    elsewhere.mkdir()
    (elsewhere / "my_reward.py").write_text("X = 1\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_reward.py").write_text("X = 2\n")
    # Like the ``rftgym`` console script: the working directory is not on sys.path.
    script = tmp_path / "bin" / "rftgym_script.py"
    script.parent.mkdir()
    script.write_text("import sys\nfrom rftgym.cli import main\nsys.exit(main())\n")
    import os

    env = {**os.environ, **QUIET_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(elsewhere)]))}
    # (no empty entry: an empty PYTHONPATH entry would put the working directory on sys.path)
    proc = subprocess.run([sys.executable, str(script), "plugins", "--plugin", "my_reward"], capture_output=True,
                          text=True, env=env, cwd=work)
    line = _error(proc)
    assert "ambiguous" in line and "--plugin ./my_reward.py" in line


# -- messages with the right line ------------------------------------------------------------------

def test_invalid_yaml_names_the_line(tmp_path):
    from rftgym.config import build_config
    from rftgym.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: 1e-4\n  max_steps: [1, 2\nseed: 1\n")
    with pytest.raises(ConfigError, match=r"at line \d+, column \d+"):
        build_config(str(path))


def test_malformed_jsonl_names_its_file_and_line(tmp_path):
    from rftgym.envs.loading import load_data
    from rftgym.envs.loading import DataError

    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "a", "answer": "1"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join('{"prompt": "a", "answer": "1"}\n' for _ in range(20)) + '{"prompt": "a", \n')
    with pytest.raises(DataError) as err:
        load_data(data_files={"train": [str(good), str(bad)]}, split="train")
    assert str(err.value).startswith(f"data file {bad} line 21 ")


# -- threads ---------------------------------------------------------------------------------------

def test_automatic_threads_leave_busy_cores_alone(monkeypatch):
    import os

    from rftgym.runner import device

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert device.auto_threads() == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert device.auto_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (14.0, 0.0, 0.0))
    assert device.auto_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert device.auto_threads(world_size=2) == 2


def test_an_unreachable_hub_fails_at_once(monkeypatch):
    import os
    import socket

    import huggingface_hub.constants as hub_constants

    from rftgym.runner.checks import offline_unless_hub_reachable

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    offline_unless_hub_reachable("embedded")
    assert not hub_constants.HF_HUB_OFFLINE
    offline_unless_hub_reachable("someorg/somemodel")
    assert hub_constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
