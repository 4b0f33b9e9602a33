"""Group rewards: one call per prompt's group, in order, under make_vec and DDP; the pipeline's
weights and fault rules; the ``reward_model_rank`` example built on a Bradley–Terry model."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rftgym
from rftgym.errors import ConfigError, PluginError, RftgymError
from rftgym.plugins.manager import get_manager
from rftgym.rewards.base import Reward, split_groups
from rftgym.rewards.pipeline import RewardError, RewardPipeline
from rftgym.rewards.reward_model_rank import pairwise_win_rate


class Recorder:
    """A reward that remembers every call's prompts, completions and columns."""

    def __init__(self, score=lambda completions: [float(len(c)) for c in completions]):
        self.calls: list[dict] = []
        self.score = score

    def __call__(self, prompts, completions, **columns):
        self.calls.append({"prompts": list(prompts), "completions": list(completions), "columns": columns})
        return self.score(completions)


def _completions(prompts, G):
    """Distinct completions that name their position in the batch (so order is checkable)."""
    return [f"{i}:{p[:6]}" for i, p in enumerate(prompts)]


# -- grouping --------------------------------------------------------------------------------------

def test_split_groups_by_ids_keeps_order_and_by_default_follows_runs_of_equal_prompts():
    assert split_groups(6, [0, 0, 1, 1, 2, 2], None) == [[0, 1], [2, 3], [4, 5]]
    assert split_groups(5, [7, 3, 7, 3, 9], None) == [[0, 2], [1, 3], [4]]  # need not be contiguous
    assert split_groups(5, None, ["a", "a", "b", "b", "a"]) == [[0, 1], [2, 3], [4]]
    with pytest.raises(RftgymError, match="3 group ids for 2"):
        split_groups(2, [0, 0, 1], None)


def test_group_reward_under_make_vec_gets_one_prompts_G_completions_per_call_in_order():
    G, B = 4, 3
    group, batch = Recorder(), Recorder()
    rftgym.register_reward("group_rec", group, group=True)
    rftgym.register_reward("batch_rec", batch)
    env = rftgym.make_vec("rftgym/Arithmetic-v0", num_envs=B * G, group_size=G,
                          reward=[{"name": "group_rec", "weight": 1.0}, {"name": "batch_rec", "weight": 0.0}])
    prompts, info = env.reset(seed=3)
    for step in range(2):
        completions = _completions(prompts, G)
        group.calls.clear(), batch.calls.clear()
        next_prompts, rewards, *_ , step_info = env.step(completions)
        assert len(batch.calls) == 1 and batch.calls[0]["completions"] == completions
        assert len(group.calls) == B
        for g, call in enumerate(group.calls):
            assert call["completions"] == completions[g * G:(g + 1) * G]     # exactly this group, in order
            assert call["prompts"] == [prompts[g * G]] * G
            assert call["columns"]["answer"] == step_info["scored"]["columns"]["answer"][g * G:(g + 1) * G]
        np.testing.assert_array_equal(rewards, [float(len(c)) for c in completions])
        prompts = next_prompts
    env.close()


def test_group_flag_through_the_plugin_hook(tmp_path):
    plugin = tmp_path / "group_plugin.py"
    plugin.write_text(textwrap.dedent('''
        import rftgym

        def rank_in_group(prompts, completions, **columns):
            order = sorted(range(len(completions)), key=lambda i: len(completions[i]))
            ranks = [0.0] * len(completions)
            for r, i in enumerate(order):
                ranks[i] = r / max(1, len(completions) - 1)
            return ranks

        @rftgym.hookimpl
        def rftgym_register_rewards(register):
            register("rank_in_group", rank_in_group, group=True)
            register("plain_len", lambda prompts, completions, **kw: [float(len(c)) for c in completions])
    '''))
    rftgym.load_plugins([str(plugin)])
    manager = get_manager()
    assert manager.rewards.meta("rank_in_group") == {"group": True}
    assert rftgym.get_reward("rank_in_group").group and not rftgym.get_reward("plain_len").group
    pipeline = RewardPipeline(["rank_in_group"])
    result = pipeline(["p", "p", "p", "q", "q"], ["aaa", "a", "aa", "bb", "b"], group_ids=[0, 0, 0, 1, 1])
    np.testing.assert_allclose(result.total, [1.0, 0.0, 0.5, 1.0, 0.0])


def test_bad_group_flag_is_a_clear_error():
    with pytest.raises(PluginError, match="group must be True or False"):
        rftgym.register_reward("oops", lambda prompts, completions, **kw: [0.0] * len(completions), group="yes")


# -- weights, metrics and faults, as for any reward --------------------------------------------------

def test_weights_and_metrics_apply_to_a_group_reward():
    centred = Reward("centred", lambda prompts, completions, **kw: list(np.array([len(c) for c in completions])
                                                                         - np.mean([len(c) for c in completions])),
                     group=True)
    pipeline = RewardPipeline([("centred", centred, 2.0), ("length", lambda prompts, completions, **kw:
                                                          [float(len(c)) for c in completions], 0.0)])
    result = pipeline(["a", "a", "b", "b"], ["x", "xxx", "yy", "yy"], group_ids=[0, 0, 1, 1])
    np.testing.assert_allclose(result.per_reward["centred"], [-1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(result.total, [-2.0, 2.0, 0.0, 0.0])
    metrics = pipeline.metrics(result)
    assert metrics["reward/centred/mean"] == 0.0 and metrics["reward/length/mean"] == 2.0


@pytest.mark.parametrize("bad, message", [
    (lambda prompts, completions, **kw: [1.0], "returned 1 values for group 1 of 2"),
    (lambda prompts, completions, **kw: 1 / 0 if completions[0] == "boom" else [0.0] * len(completions),
     "raised ZeroDivisionError"),
    (lambda prompts, completions, **kw: [float("nan")] * len(completions), "NaN/inf"),
])
def test_a_failing_group_reward_raises_naming_it_or_warns_and_uses_the_fallback(bad, message, caplog):
    calls = []

    def flaky(prompts, completions, **kw):
        calls.append(list(completions))
        return [0.5] * len(completions) if len(calls) == 1 else bad(prompts, completions, **kw)

    prompts, completions, ids = ["a", "a", "b", "b"], ["ok", "ok", "boom", "x"], [0, 0, 1, 1]
    with pytest.raises(RewardError, match=f"reward 'flaky'.*{message}|{message}.*'flaky'"):
        RewardPipeline([("flaky", Reward("flaky", flaky, group=True), 1.0)])(prompts, completions, group_ids=ids)
    calls.clear()
    warn = RewardPipeline([("flaky", Reward("flaky", flaky, group=True), 1.0)], on_error="warn", fallback=-1.0)
    result = warn(prompts, completions, group_ids=ids)
    assert result.faults["flaky"] > 0
    assert set(result.total[result.total != 0.5]) == {-1.0}
    assert any("flaky" in r.message for r in caplog.records)


def test_a_slow_group_reward_times_out_per_batch():
    import threading

    release = threading.Event()

    def slow(prompts, completions, **kw):
        release.wait(5)
        return [0.0] * len(completions)

    pipeline = RewardPipeline([("slow", Reward("slow", slow, group=True), 1.0, 0.2)], on_error="warn")
    result = pipeline(["a", "a"], ["x", "y"], group_ids=[0, 0])
    release.set()
    assert result.faults["slow"] == 2


# -- the reward_model_rank example --------------------------------------------------------------------

def test_pairwise_win_rate_matches_the_bradley_terry_formula():
    s = [2.0, 0.0, -1.0]
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [(sig(2) + sig(3)) / 2, (sig(-2) + sig(1)) / 2, (sig(-3) + sig(-1)) / 2]
    np.testing.assert_allclose(pairwise_win_rate(s), expected)
    assert pairwise_win_rate(s).mean() == pytest.approx(0.5)
    np.testing.assert_allclose(pairwise_win_rate(s, temperature=2.0)[0], (sig(1) + sig(1.5)) / 2)
    np.testing.assert_allclose(pairwise_win_rate([5.0]), [0.5])
    assert np.isfinite(pairwise_win_rate([1e6, -1e6])).all()


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    """A random one-label classifier with the char tokenizer: scores differ per text."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    from rftgym.runner.tiny_model import build_char_tokenizer

    path = tmp_path_factory.mktemp("rm")
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, num_labels=1, pad_token_id=tok.pad_token_id)
    Qwen2ForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_reward_model_rank_is_the_win_rate_of_the_models_scores_within_each_group(tiny_rm):
    rank = rftgym.get_reward("reward_model_rank", path=str(tiny_rm))
    assert rank.group
    raw = rftgym.get_reward("reward_model", path=str(tiny_rm))
    prompts = ["1+1="] * 3 + ["2+5="] * 4
    completions = ["2", "3", "11", "7", "8", "70", "6"]
    got = rank(prompts, completions)                          # groups: runs of equal prompts
    scores = np.asarray(raw(prompts, completions))
    expected = np.concatenate([pairwise_win_rate(scores[:3]), pairwise_win_rate(scores[3:])])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.mean(got[:3]) == pytest.approx(0.5) and np.mean(got[3:]) == pytest.approx(0.5)
    # a completion's rank depends on its group: the same text in another group scores differently
    alone = rank(["1+1="] * 2, ["2", "3"])
    assert alone != got[:2]
    rank.close(), raw.close()


def test_reward_model_rank_bad_options_are_one_line():
    with pytest.raises(ConfigError, match="needs option 'path'"):
        rftgym.get_reward("reward_model_rank")
    with pytest.raises(RftgymError, match="temperature must be a number > 0"):
        rftgym.get_reward("reward_model_rank", path="x", temperature=0).impl


# -- DDP -----------------------------------------------------------------------------------------------

PLUGIN = textwrap.dedent('''
    import json, os
    import rftgym

    LOG = os.environ["GROUP_LOG_DIR"]

    def _write(kind, prompts, completions):
        with open(os.path.join(LOG, f"rank-{os.environ.get('RANK', '0')}.jsonl"), "a") as fh:
            fh.write(json.dumps({"kind": kind, "prompts": list(prompts), "completions": list(completions)}) + "\\n")

    def whole_batch(prompts, completions, **columns):
        _write("batch", prompts, completions)
        return [0.0] * len(completions)

    def by_group(prompts, completions, **columns):
        _write("group", prompts, completions)
        return [len(c) / 8.0 for c in completions]

    rftgym.register_reward("whole_batch", whole_batch)
    rftgym.register_reward("by_group", by_group, group=True)
''')


@pytest.mark.slow
def test_group_reward_under_ddp_gets_each_ranks_groups_whole_and_in_order(tmp_path):
    from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer()
    build_tiny_model(tok, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                     intermediate_size=64).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    (tmp_path / "plugin.py").write_text(PLUGIN)
    logs = tmp_path / "logs"
    logs.mkdir()
    G, B, world, steps = 4, 4, 2, 2
    # whole_batch first: the pipeline calls rewards in order, so each batch line precedes its groups
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
           "-m", "rftgym", "train", "--device", "cpu", "--model", str(tmp_path / "model"),
           "--plugin", str(tmp_path / "plugin.py"), "--reward", "whole_batch", "--reward", "by_group",
           "--max-steps", str(steps), "--output-dir", str(tmp_path / "run"),
           "--set", f"rollout.prompts_per_step={B}", "--set", f"algo.group_size={G}",
           "--set", "rollout.max_new_tokens=4", "--set", "eval.every=0", "--set", "logging.progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GROUP_LOG_DIR": str(logs)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(world):
        lines = [json.loads(x) for x in (logs / f"rank-{rank}.jsonl").read_text().splitlines()]
        batches = [i for i, x in enumerate(lines) if x["kind"] == "batch"]
        assert len(batches) == steps
        for start in batches:
            batch = lines[start]
            groups = lines[start + 1:start + 1 + B // world]
            assert len(batch["completions"]) == B // world * G
            assert all(g["kind"] == "group" and len(g["completions"]) == G for g in groups)
            assert all(len(set(g["prompts"])) == 1 for g in groups)          # one prompt per call
            assert [c for g in groups for c in g["completions"]] == batch["completions"]  # in order
            assert [g["prompts"][0] for g in groups] == batch["prompts"][::G]
