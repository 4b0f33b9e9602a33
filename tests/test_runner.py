"""The training loop end to end on a tiny random model: outputs, updates, resume, errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rftgym
from rftgym.errors import RftgymError

from runner_fixtures import build_tiny_model_dir, read_jsonl, run_config, write_prompt_file


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    return build_tiny_model_dir(root / "model"), write_prompt_file(root / "prompts.jsonl")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _train_lines(rows):
    return [r for r in rows if "eval/reward" not in r]


def _eval_lines(rows):
    return [r for r in rows if "eval/reward" in r]


def test_grpo_run_writes_the_documented_outputs(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "run"
    result = rftgym.train(run_config(model_dir, data, out))
    assert result.output_dir == out and result.final_metrics["step"] == 3

    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in _train_lines(rows)] == [1, 2, 3]
    assert [r["step"] for r in _eval_lines(rows)] == [0, 2, 3]
    for line in _train_lines(rows):
        for key in ("reward/total/mean", "reward/exact_match/mean", "loss/total", "grad_norm", "lr", "entropy",
                    "completion/length_mean", "time/sample", "time/prepare", "time/score", "time/update",
                    "tokens_per_s", "adv/std", "memory/peak_rss_gb"):
            assert key in line, key
    assert all("eval/accuracy" in r for r in _eval_lines(rows))  # the dataset has answers: math check

    samples = read_jsonl(out / "samples.jsonl")
    assert samples and {"prompt", "completion", "reward", "answer", "step"} <= set(samples[0])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-3"]
    assert (out / "config.yaml").read_text().startswith("model:")

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    assert tokenizer.decode(tokenizer("12+3=")["input_ids"]) == "12+3="
    before, after = _weights(model_dir), _weights(out / "final")
    assert any(not torch.equal(before[k], after[k]) for k in before), "training did not change any weight"


def test_reference_and_critic_forwards_run_while_the_rewards_are_scored(assets, tmp_path, monkeypatch):
    import threading

    from rftgym.runner.trainer import Trainer

    model_dir, data = assets
    prepared, seen = threading.Event(), []
    original = Trainer._prepare

    def prepare(self, samples):
        extra = original(self, samples)
        seen.append(sorted(extra))
        prepared.set()
        return extra

    def waits_for_prepare(prompts, completions, **columns):
        # 1 only if the runner's reward-free forwards finished while this reward was running
        done = prepared.wait(timeout=10)
        prepared.clear()
        return [float(done)] * len(completions)

    monkeypatch.setattr(Trainer, "_prepare", prepare)
    rftgym.register_reward("waits_for_prepare", waits_for_prepare)
    config = run_config(model_dir, data, tmp_path / "run", rewards=[{"name": "waits_for_prepare"}],
                        **{"algo.name": "ppo", "algo.kl_coef": 0.05, "eval.every": 0})
    rftgym.train(config)
    rows = _train_lines(read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    assert seen and all(keys == ["ref_logp", "values"] for keys in seen)   # PPO: one rollout, several steps
    assert len(rows) == 3 and all(r["reward/total/mean"] == 1.0 for r in rows)
    # one line per rollout (a step), each after PPO's epochs x minibatches = 4 x 2 updates
    assert [r["optimizer_steps"] for r in rows] == [8, 16, 24]
    assert all(r["tokens_per_s"] > 0 for r in rows)


def test_env_without_async_scoring_or_with_its_own_step_is_stepped(monkeypatch):
    import gymnasium

    from rftgym.envs.vector import PromptBanditVectorEnv
    from rftgym.runner.trainer import _scores_async

    class OwnStep(PromptBanditVectorEnv):
        def step(self, actions):                    # post-processing the runner must not skip
            return super().step(actions)

    class Plain(gymnasium.vector.VectorEnv):
        def step(self, actions):
            raise NotImplementedError

    assert _scores_async(PromptBanditVectorEnv(4, 2, task="arithmetic"))
    assert not _scores_async(OwnStep(4, 2, task="arithmetic"))
    assert not _scores_async(Plain())


def test_dynamic_sampling_prepares_only_the_kept_groups(assets, tmp_path, monkeypatch):
    from rftgym.algos.rollout import Rollout
    from rftgym.runner.trainer import Trainer

    model_dir, data = assets
    calls = []
    original = Trainer._prepare

    def prepare(self, batch):
        calls.append((type(batch), len(batch.completion_ids)))
        return original(self, batch)

    monkeypatch.setattr(Trainer, "_prepare", prepare)
    # exact match is all-zero on a random model: every group is dropped, four batches are drawn
    config = run_config(model_dir, data, tmp_path / "run", rewards=[{"name": "exact_match"}],
                        **{"algo.dynamic_sampling": True, "algo.beta": 0.04, "eval.every": 0})
    rftgym.train(config)
    rows = _train_lines(read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    assert len(rows) == 3 and len(calls) == 3
    assert all(kind is Rollout and n == 8 for kind, n in calls)   # once per step, on the kept rollout
    assert all(r["rollout/batches"] == 4 for r in rows)


def test_ppo_run_trains_policy_and_critic(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "ppo"
    config = run_config(model_dir, data, out, **{"algo": {"name": "ppo", "epochs": 2, "minibatches": 2},
                                                 "train.max_steps": 2, "save_every": 0, "eval.every": 0})
    rftgym.train(config)
    rows = read_jsonl(out / "metrics.jsonl")
    # a step is a rollout: 2 rollouts, each 2 epochs x 2 minibatches = 4 optimizer steps
    assert [(r["step"], r["optimizer_steps"]) for r in _train_lines(rows)] == [(1, 4), (2, 8)]
    assert any(k.startswith("value") or "value" in k for k in rows[0]), sorted(rows[0])
    assert (out / "checkpoints" / "step-2" / "critic.safetensors").is_file()


def test_existing_run_is_not_overwritten(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "run"
    rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 1, "eval.every": 0}))
    before = (out / "metrics.jsonl").read_bytes()
    with pytest.raises(RftgymError, match="already holds a run"):
        rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 1, "eval.every": 0}))
    assert (out / "metrics.jsonl").read_bytes() == before


def test_resume_logs_every_step_once(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "run"
    rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 2, "save_every": 1}))
    rftgym.train(run_config(model_dir, data, out, **{"train.max_steps": 4, "save_every": 1, "resume": True}))
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in _train_lines(rows)] == [1, 2, 3, 4]
    assert [r["step"] for r in _eval_lines(rows)] == [0, 2, 4]


def test_unloadable_model_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "rftgym", "train", "--model", str(tmp_path / "empty"),
                           "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not be loaded" in lines[0] and "--model" in lines[0], proc.stderr
    # a directory that does not exist says so, before anything loads (not a hub-id problem)
    proc = subprocess.run([sys.executable, "-m", "rftgym", "train", "--model", str(tmp_path / "nope"),
                           "--output-dir", str(tmp_path / "out"), "--dry-run"], capture_output=True, text=True,
                          timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "no such directory" in lines[0], proc.stderr


def test_cli_train_runs_and_prints_final_metrics(assets, tmp_path):
    model_dir, data = assets
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "rftgym", "train", "--model", str(model_dir), "--env",
                           "rftgym/PromptDataset-v0", "--set", f"env.kwargs.data_files={data}",
                           "--set", "env.kwargs.prompt_column=question", "--set", "env.eval_kwargs={}",
                           "--reward", "exact_match", "--max-steps", "1", "--quiet",
                           "--set", "rollout.prompts_per_step=2", "--set", "eval.num_prompts=4",
                           "--output-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert '"step": 1' in proc.stdout.strip().splitlines()[-1]
    assert (out / "final" / "config.json").is_file()


def test_out_of_memory_is_one_clear_error_naming_the_step(assets, tmp_path, monkeypatch):
    from rftgym.runner import policy

    def oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(policy, "completion_logprobs", oom)
    monkeypatch.setattr("rftgym.runner.update.completion_logprobs", oom)
    monkeypatch.setattr("rftgym.runner.collect.completion_logprobs", oom)
    model_dir, data = assets
    with pytest.raises(RftgymError, match=r"out of memory at step 1 on cpu: .*micro_batch_size"):
        rftgym.train(run_config(model_dir, data, tmp_path / "run", **{"eval.every": 0}))


def _count_checkpoints(monkeypatch) -> list:
    import transformers.modeling_utils as mu

    calls = []
    original = mu.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(mu, "checkpoint", counting)  # bound when checkpointing is enabled
    return calls


def test_gradient_checkpointing_really_checkpoints(assets, tmp_path, monkeypatch):
    calls = _count_checkpoints(monkeypatch)
    model_dir, data = assets
    rftgym.train(run_config(model_dir, data, tmp_path / "run", **{"model.gradient_checkpointing": True,
                                                                  "train.max_steps": 1, "eval.every": 0}))
    assert calls, "model.gradient_checkpointing=true ran no checkpointed layer"


@pytest.mark.parametrize("threshold, expected", [(None, False), (1, True)])
def test_gradient_checkpointing_auto_follows_the_model_size(assets, tmp_path, monkeypatch, threshold, expected):
    """``auto`` (the default) checkpoints models from CHECKPOINT_FROM_PARAMS parameters up: the
    test model is far below 100M (not checkpointed) and above a threshold of 1 (checkpointed);
    the saved model keeps ``use_cache`` on."""
    import json

    from rftgym.config import ModelConfig
    from rftgym.runner import models

    assert ModelConfig().gradient_checkpointing == "auto"
    if threshold is not None:
        monkeypatch.setattr(models, "CHECKPOINT_FROM_PARAMS", threshold)
    calls = _count_checkpoints(monkeypatch)
    model_dir, data = assets
    rftgym.train(run_config(model_dir, data, tmp_path / "run", **{"train.max_steps": 1, "eval.every": 0}))
    assert bool(calls) is expected
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text()).get("use_cache", True) is True


def test_logged_entropy_is_the_token_mean_entropy(assets, tmp_path):
    from rftgym.config import build_config
    from rftgym.runner.policy import completion_logprobs
    from rftgym.runner.trainer import Trainer

    model_dir, data = assets
    trainer = Trainer(build_config(run_config(model_dir, data, tmp_path / "run", **{"eval.every": 0})))
    try:
        obs, _ = trainer.env.reset(seed=0)
        rollout, _, _, _ = trainer.collect(obs)
        trainer.algorithm.advantages(rollout)
        args = (rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, rollout.completion_mask)
        with torch.no_grad():
            _, entropy = completion_logprobs(trainer.model, *args, with_entropy=True)
        expected = float(entropy.sum() / rollout.completion_mask.sum())
        trainer._step = trainer._nonfinite = 0
        metrics = trainer.update(rollout)
        assert metrics["entropy"] == pytest.approx(expected, rel=1e-4)
    finally:
        trainer.close()
