"""The learned reward: Bradley–Terry loss, train-rm on a small file, the reward_model reward, bad input."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rftgym
from rftgym.algos.core import bradley_terry_loss
from rftgym.errors import ConfigError, RftgymError
from rftgym.rewards.reward_model import RewardModelReward, RunningStats
from rftgym.runner.train_rm import (arithmetic_preference_rows, options_from_args,
                                               train_reward_model)

REPO = Path(__file__).resolve().parent.parent


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def easy_rows(n: int, seed: int = 0) -> list[dict]:
    """Chosen = the right sum, rejected = a far-wrong 3-digit number: learnable in a few dozen steps."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randrange(10), rng.randrange(10)
        rows.append({"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(rng.randrange(500, 1000))})
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small training run shared by the tests that need a trained model (keeps the file fast)."""
    root = tmp_path_factory.mktemp("rm")
    data = write_jsonl(root / "prefs.jsonl", easy_rows(400))
    out = root / "run"
    result = train_reward_model(str(data), output_dir=out, max_steps=40, batch_size=32, lr=1e-3,
                                eval_fraction=0.2, eval_every=20, save_every=20, seed=0, threads=1, quiet=True)
    return out, result


# -- the loss ----------------------------------------------------------------------------------

def test_bradley_terry_loss_matches_hand_computed_values():
    chosen, rejected = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    # −log σ(d) = log(1 + e^(−d)) for d = 2, 0, −2
    expected = (math.log1p(math.exp(-2)) + math.log(2) + math.log1p(math.exp(2))) / 3
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, rel=1e-6)
    # With a margin m the difference is d − m: d = 2 − 1 = 1 for a single pair.
    got = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0])).item()
    assert got == pytest.approx(math.log1p(math.exp(-1)), rel=1e-6)
    # A huge gap stays finite (logsigmoid, not log(sigmoid)).
    assert math.isfinite(bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0])).item())


# -- training ----------------------------------------------------------------------------------

def test_training_improves_held_out_accuracy_and_writes_the_run(trained):
    out, result = trained
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [l for l in lines if "eval/accuracy" in l]
    train_lines = [l for l in lines if "loss" in l]
    assert [l["step"] for l in train_lines] == list(range(1, 41))  # one line per optimizer step
    assert [l["step"] for l in evals] == [0, 20, 40]
    assert evals[-1]["eval/accuracy"] > evals[0]["eval/accuracy"] + 0.2
    assert evals[-1]["eval/margin"] > evals[0]["eval/margin"]
    assert result["eval/accuracy"] == evals[-1]["eval/accuracy"]
    assert result["steps"] == 40 and result["pairs_skipped"] == 0 and result["output_dir"] == str(out)
    assert (out / "checkpoints" / "step-20" / "trainer_state.json").is_file()
    assert not any(p.name.startswith(".") for p in (out / "checkpoints").iterdir())  # no temp dir left

    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out / "final")
    assert model.config.num_labels == 1
    assert model.config.pad_token_id is not None and model.config.pad_token_id != model.config.eos_token_id


def test_reward_scores_one_float_per_completion_deterministic_and_batch_independent(trained):
    out, _ = trained
    prompts = [f"{a}+{b}=" for a in range(4) for b in range(5)]
    completions = [str(a + b) if (a + b) % 2 else "777" for a in range(4) for b in range(5)]
    completions[3] = "a much longer completion than the others"
    big = RewardModelReward(str(out / "final"), batch_size=64, device="cpu")
    small = RewardModelReward(str(out / "final"), batch_size=3, device="cpu")
    first = big(prompts, completions)
    assert len(first) == len(completions) and all(isinstance(x, float) for x in first)
    assert big(prompts, completions) == first
    assert small(prompts, completions) == pytest.approx(first, abs=1e-4)
    # The trained model prefers the right sum to the far-wrong number on a prompt it never saw.
    right, wrong = big(["8+9=", "8+9="], ["17", "654"])
    assert right > wrong
    big.close()


def test_get_reward_through_the_registry_with_normalisation_and_clipping(trained):
    out, _ = trained
    reward = rftgym.get_reward("reward_model", path=str(out / "final"), device="cpu", normalize=True, clip=1.5)
    values = reward(["1+1="] * 6, ["2", "3", "900", "2", "11", "4"])
    assert len(values) == 6 and max(abs(v) for v in values) <= 1.5
    # Normalised over what it has seen so far: the first batch is (clipped) zero-mean.
    assert abs(sum(values)) / 6 < 0.5
    state = reward.state_dict()
    assert state["stats"]["count"] == 6
    reward.close()


def test_running_stats_match_numpy_and_resume():
    import numpy as np

    data = np.random.default_rng(0).normal(3.0, 2.0, size=50)
    stats = RunningStats()
    for chunk in np.array_split(data, 7):
        stats.update(chunk)
    assert stats.mean == pytest.approx(data.mean()) and stats.std == pytest.approx(data.std())
    other = RunningStats()
    other.load_state_dict(stats.state_dict())
    assert other.mean == stats.mean and other.std == stats.std


# -- bad input -----------------------------------------------------------------------------------

def test_missing_columns_are_named(tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"question": "1+1=", "good": "2", "bad": "3"}] * 4)
    with pytest.raises(RftgymError, match=r"'chosen', 'rejected'.*found: question, good, bad"):
        train_reward_model(str(data), output_dir=tmp_path / "run", max_steps=1, quiet=True, threads=1)


def test_identical_pairs_are_skipped_and_counted(tmp_path):
    rows = easy_rows(20) + [{"prompt": "1+1=", "chosen": "2", "rejected": "2"}] * 3
    data = write_jsonl(tmp_path / "dup.jsonl", rows)
    result = train_reward_model(str(data), output_dir=tmp_path / "run", max_steps=2, batch_size=8,
                                eval_every=0, save_every=0, quiet=True, threads=1)
    assert result["pairs_skipped"] == 3
    assert result["eval/accuracy"] is not None


def test_a_path_that_is_not_a_one_label_classifier_is_a_clear_error(tmp_path):
    from transformers import LlamaForCausalLM

    from rftgym.runner.tiny_model import tiny_config

    with pytest.raises(RftgymError, match="not a model directory"):
        RewardModelReward(str(tmp_path / "nothing-here")).setup()
    causal = tmp_path / "causal"
    LlamaForCausalLM(tiny_config(64, hidden_size=16, intermediate_size=32, num_hidden_layers=1)).save_pretrained(causal)
    with pytest.raises(RftgymError, match="LlamaForCausalLM, not a sequence-classification model"):
        RewardModelReward(str(causal)).setup()


def test_set_overrides_map_to_keywords_and_unknown_keys_name_the_closest():
    class Args:
        data = model = max_steps = seed = device = None
        output_dir = "x"
        overwrite = quiet = False
        overrides = ["lr=5e-5", "batch_size=32", "center_coef=0.01"]

    kwargs = options_from_args(Args())
    assert kwargs["lr"] == 5e-5 and kwargs["batch_size"] == 32 and kwargs["center_coef"] == 0.01
    Args.overrides = ["batch_sise=32"]
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        options_from_args(Args())
    Args.overrides = ["batch_size=lots"]
    with pytest.raises(ConfigError, match="batch_size"):
        options_from_args(Args())


def test_builtin_pairs_are_near_misses_with_disjoint_held_out_prompts():
    train = arithmetic_preference_rows(2000, "train", seed=0)
    test = arithmetic_preference_rows(300, "test", seed=0)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    for row in train + test:
        a, b = row["prompt"][:-1].split("+")
        assert row["chosen"] == str(int(a) + int(b))
        assert int(row["rejected"]) - int(row["chosen"]) in (-11, -10, -2, -1, 1, 2, 10, 11)


# -- command line --------------------------------------------------------------------------------

def test_cli_train_rm_writes_metrics_and_final(tmp_path):
    data = write_jsonl(tmp_path / "prefs.jsonl", easy_rows(60))
    out = tmp_path / "cli-run"
    env = {**os.environ, "RFTGYM_LOAD_PLUGINS": ""}
    proc = subprocess.run([sys.executable, "-m", "rftgym", "train-rm", "--data", str(data), "--output-dir", str(out),
                           "--max-steps", "5", "--quiet", "--set", "threads=1", "--set", "batch_size=16"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["steps"] == 5 and result["output_dir"] == str(out)
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "loss" in l] == [1, 2, 3, 4, 5]
    assert [l["step"] for l in lines if "eval/accuracy" in l] == [0, 5]
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "tokenizer.json").is_file()


def test_refuses_a_used_directory_and_resume_continues_exactly(tmp_path):
    data = str(write_jsonl(tmp_path / "prefs.jsonl", easy_rows(60)))
    kwargs = dict(output_dir=tmp_path / "run", batch_size=16, eval_every=5, save_every=5, quiet=True, threads=1)

    def losses():
        lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        return [(l["step"], l.get("loss", l.get("eval/loss"))) for l in lines]

    train_reward_model(data, max_steps=10, **kwargs)
    straight = losses()
    with pytest.raises(RftgymError, match="--overwrite"):
        train_reward_model(data, max_steps=10, **kwargs)
    train_reward_model(data, max_steps=5, overwrite=True, **kwargs)  # stops at a checkpoint
    assert train_reward_model(data, max_steps=10, resume=True, **kwargs)["steps"] == 10
    resumed = losses()
    assert [s for s, _ in resumed] == [s for s, _ in straight]
    assert [v for _, v in resumed] == pytest.approx([v for _, v in straight], abs=1e-5)


def test_conversational_pairs_use_the_chat_template_or_joined_contents():
    from rftgym.runner.train_rm import rows_to_pairs
    from rftgym.runner.tiny_model import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    rows = [{"prompt": [{"role": "user", "content": "1+1="}],
             "chosen": [{"role": "assistant", "content": "2"}],
             "rejected": [{"role": "assistant", "content": "3"}]}]
    pairs, skipped = rows_to_pairs(rows, tokenizer)
    assert (pairs.chosen, pairs.rejected, skipped) == (["1+1=\n2"], ["1+1=\n3"], 0)  # no template: joined
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    pairs, _ = rows_to_pairs(rows, tokenizer)
    assert pairs.chosen == ["<user>1+1=<assistant>2"] and pairs.templated == [True]
