"""The difficulty curriculum: skip rules and weights, sampling that follows the pass rates,
``curriculum/*`` metrics, and a bit-exact resume with the curriculum on."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import rftgym
from rftgym.envs.curriculum import CurriculumOptions, CurriculumSource, pass_weights
from rftgym.errors import ConfigError

from runner_fixtures import build_tiny_model_dir, read_jsonl, run_config, write_prompt_file

ROWS = [{"prompt": f"q{i}", "answer": str(i)} for i in range(10)]
EASY, HARD, MIXED = {0, 1, 2}, {3, 4, 5}, {6, 7, 8, 9}


def by_difficulty(prompts, completions, answer, **columns):
    """Easy rows always pass, hard ones never, the rest pass on even-numbered completions."""
    out = []
    for completion, a in zip(completions, answer):
        i = int(a)
        even = completion.isdigit() and int(completion) % 2 == 0   # check_env sends random text too
        out.append(1.0 if i in EASY else 0.0 if i in HARD else float(even))
    return out


def _env(G=4, prompts=2, **curriculum):
    return rftgym.make_vec("rftgym/PromptDataset-v0", num_envs=prompts * G, group_size=G, dataset=ROWS,
                           reward=("diff", by_difficulty, 1.0), check=None,
                           curriculum={"min_attempts": 4, **curriculum})


def _play(env, steps, G=4, seed=0):
    """Reset with ``seed`` and step; returns the answer (row id) of every prompt drawn, per step."""
    prompts, info = env.reset(seed=seed)
    drawn = []
    for _ in range(steps):
        drawn.append([int(a) for a in info["columns"]["answer"][::G]])
        prompts, _, _, _, info = env.step([str(j % G) for j in range(len(prompts))])
    return drawn, info


def test_options_are_checked_naming_the_key():
    with pytest.raises(ConfigError, match="no option 'min_atempts'; did you mean 'min_attempts'"):
        CurriculumOptions.from_value({"min_atempts": 3})
    with pytest.raises(ConfigError, match="curriculum.decay = 0 is invalid"):
        CurriculumOptions.from_value({"decay": 0})
    with pytest.raises(ConfigError, match="true or a mapping"):
        CurriculumOptions.from_value("yes")
    assert CurriculumOptions.from_value(True) == CurriculumOptions()


def test_weights_skip_settled_prompts_and_favour_a_pass_rate_near_one_half():
    opts = CurriculumOptions(min_attempts=4)
    attempts = np.array([0, 8, 8, 8, 8, 3, 3])
    passes = np.array([0, 8, 0, 4, 7, 3, 0])
    w = pass_weights(attempts.astype(float), passes.astype(float), opts)
    p = (passes + 1) / (attempts + 2)
    assert w[0] == pytest.approx(0.25)                 # never tried: the largest weight
    assert w[1] == 0 and w[2] == 0                     # solved every time / never, after enough attempts
    assert w[3] == pytest.approx(p[3] * (1 - p[3])) and w[3] > w[4] > 0
    assert w[5] > 0 and w[6] > 0                       # too few attempts to skip yet
    assert pass_weights(attempts.astype(float), passes.astype(float),
                        CurriculumOptions(min_attempts=4, revisit=0.01))[1] == 0.01


def test_draws_follow_the_weights():
    source = CurriculumSource(__import__("rftgym.envs.sources", fromlist=["build_source"]).build_source(
        dataset=ROWS), {"min_attempts": 4})
    source.attempts[:] = [8, 8, 8, 8, 8, 8, 8, 8, 0, 0]
    source.passes[:] = [8, 0, 4, 4, 2, 2, 6, 1, 0, 0]
    w = pass_weights(source.attempts, source.passes, source.options)
    rng = np.random.default_rng(0)
    counts = Counter(row.key for _ in range(20000) for row in source.draw(rng, 1))
    assert counts[0] == 0 and counts[1] == 0
    freq = np.array([counts[i] for i in range(10)]) / 20000
    np.testing.assert_allclose(freq, w / w.sum(), atol=0.015)


def test_env_stops_drawing_prompts_solved_always_or_never_and_logs_it():
    env = _env()
    drawn, info = _play(env, 30)
    seen_by = {}
    for step, rows in enumerate(drawn):
        for r in rows:
            seen_by.setdefault(r, step)
        assert len(set(rows)) == len(rows)                     # distinct prompts within a batch
    # each easy/hard prompt is drawn once (one group = 4 attempts = min_attempts), then skipped
    flat = [r for rows in drawn for r in rows]
    for r in EASY | HARD:
        assert flat.count(r) <= 1
    late = [r for rows in drawn[10:] for r in rows]
    assert set(late) <= MIXED and len(late) == 40
    metrics = info["scored"]["metrics"]
    seen = {r for r in flat}
    assert metrics["curriculum/solved"] == len(EASY & seen) / 10
    assert metrics["curriculum/unsolved"] == len(HARD & seen) / 10
    assert metrics["curriculum/batch_pass_rate"] == 0.5        # mixed prompts: 2 of 4 completions pass
    assert metrics["curriculum/pool"] == 10
    env.close()


def test_without_the_curriculum_every_prompt_keeps_being_drawn():
    env = rftgym.make_vec("rftgym/PromptDataset-v0", num_envs=8, group_size=4, dataset=ROWS,
                          reward=("diff", by_difficulty, 1.0), check=None)
    drawn, info = _play(env, 30)
    assert set(r for rows in drawn[10:] for r in rows) & (EASY | HARD)
    assert info["scored"]["metrics"] == {}
    env.close()


def test_sequential_order_ignores_the_curriculum():
    env = rftgym.make_vec("rftgym/PromptDataset-v0", num_envs=2, group_size=1, dataset=ROWS, order="sequential",
                          reward=("diff", by_difficulty, 1.0), check=None, curriculum=True)
    drawn, info = _play(env, 10, G=1)
    assert [r for rows in drawn for r in rows] == list(range(10)) * 2
    env.close()


def test_a_procedural_task_works_and_a_stream_is_refused():
    env = rftgym.make_vec("rftgym/Arithmetic-v0", num_envs=8, group_size=4, curriculum={"max_pool": 50})
    assert env.unwrapped.source.size == 50
    prompts, _ = env.reset(seed=0)
    _, _, _, _, info = env.step(["1"] * 8)
    assert info["scored"]["metrics"]["curriculum/unseen"] == 48 / 50
    env.close()
    from datasets import Dataset

    stream = Dataset.from_list(ROWS).to_iterable_dataset()
    with pytest.raises(ConfigError, match="finite prompt set"):
        rftgym.make_vec("rftgym/PromptDataset-v0", num_envs=2, dataset=stream, curriculum=True)


def test_env_state_round_trips_through_json_and_continues_identically():
    a = _env(decay=0.9)
    drawn_a, _ = _play(a, 5)
    state = json.loads(json.dumps(a.unwrapped.state_dict()))
    rest_a = []
    prompts, info = None, None
    for _ in range(6):
        batch = a.unwrapped._batch
        rest_a.append([int(r.columns["answer"]) for r in batch[::4]])
        a.step([str(j % 4) for j in range(8)])
    b = _env(decay=0.9)
    b.reset(seed=123)                                  # a different history, overwritten by the state
    b.unwrapped.load_state_dict(state)
    prompts, info = b.reset()
    rest_b = []
    for _ in range(6):
        rest_b.append([int(a) for a in info["columns"]["answer"][::4]])
        prompts, _, _, _, info = b.step([str(j % 4) for j in range(8)])
    assert rest_b == rest_a
    np.testing.assert_array_equal(a.unwrapped.source.attempts, b.unwrapped.source.attempts)
    np.testing.assert_array_equal(a.unwrapped.source.passes, b.unwrapped.source.passes)
    a.close(), b.close()


# -- through the runner ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("curriculum")
    return build_tiny_model_dir(root / "model"), write_prompt_file(root / "prompts.jsonl", n=6)


def _config(assets, out: Path, **overrides) -> dict:
    model_dir, data = assets
    config = run_config(model_dir, data, out, **{"train.max_steps": 6, "save_every": 1, "seed": 2,
                                                 "train.threads": 1, "eval.every": 0, **overrides})
    # No answer check: a completion passes when its total reward beats the worst length penalty
    # (-1), which this random model does now and then. 6 prompts, 2 a step, groups of 4: every
    # path is taken within 6 steps (unseen, skipped as unsolved, refilled from skipped ones).
    config["env"]["kwargs"].update({"check": None, "curriculum": {"min_attempts": 4, "pass_threshold": -0.99}})
    return config


def test_run_logs_curriculum_metrics_and_resumes_bit_exactly(assets, tmp_path):
    from safetensors.torch import load_file

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    rftgym.train(_config(assets, straight))
    rftgym.train(_config(assets, resumed, **{"train.max_steps": 3}))
    rftgym.train(_config(assets, resumed, **{"resume": True}))
    lines_s, lines_r = read_jsonl(straight / "metrics.jsonl"), read_jsonl(resumed / "metrics.jsonl")
    assert [x["step"] for x in lines_r] == [1, 2, 3, 4, 5, 6]
    keys = [k for k in lines_s[0] if k.startswith("curriculum/")]
    assert {"curriculum/active", "curriculum/solved", "curriculum/unsolved", "curriculum/unseen"} <= set(keys)
    assert lines_s[-1]["curriculum/unseen"] == 0 < lines_s[0]["curriculum/unseen"]
    assert max(x["curriculum/unsolved"] for x in lines_s) > 0 and max(x["curriculum/batch_pass_rate"] for x in lines_s) > 0
    for s, r in zip(lines_s, lines_r):
        for key in keys + ["reward/total/mean", "loss/total"]:
            assert s[key] == r[key] or (s[key] != s[key] and r[key] != r[key]), (s["step"], key)
    state_s = json.loads(torch.load(straight / "checkpoints" / "step-6" / "rank-0.pt", weights_only=True)["env"])
    state_r = json.loads(torch.load(resumed / "checkpoints" / "step-6" / "rank-0.pt", weights_only=True)["env"])
    assert state_s["source"]["attempts"] == state_r["source"]["attempts"] and sum(state_s["source"]["attempts"]) > 0
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_single_env_records_too_and_passes_check_env():
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("rftgym/PromptDataset-v0", dataset=ROWS, reward=("diff", by_difficulty, 1.0), check=None,
                         curriculum={"min_attempts": 1})
    check_env(env.unwrapped)
    env.reset(seed=0)
    source = env.unwrapped.source
    for _ in range(30):
        _, info = env.reset()
        env.step("0")
    assert source.attempts.sum() == 30
    # "0" passes every mixed row too, so after one try each (min_attempts=1) every row is settled:
    # nothing is drawable any more and draws fall back to the skipped rows, uniformly
    metrics = source.metrics()
    assert metrics["curriculum/active"] == 0 and metrics["curriculum/unseen"] == 0
    assert metrics["curriculum/solved"] == 0.7 and metrics["curriculum/unsolved"] == 0.3
    env.close()
