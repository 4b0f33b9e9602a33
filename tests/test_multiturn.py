"""Multi-turn Gymnasium text envs: the episode loop, its masks, every algorithm, bad envs, resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gymnasium
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import rftgym
from multiturn_envs import register
from runner_fixtures import build_tiny_model_dir, read_jsonl

TESTS = Path(__file__).resolve().parent
ROLL = SimpleNamespace(max_new_tokens=3, max_turns=3, max_episode_tokens=40, temperature=1.0, top_p=1.0, top_k=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model_dir(tmp_path_factory.mktemp("mt") / "model")


@pytest.fixture()
def ids():
    return register()


def _policy(model_dir):
    from rftgym.runner.models import load_policy
    from rftgym.runner.policy import Policy
    from rftgym.config import ModelConfig

    torch.manual_seed(0)
    model, tok = load_policy(ModelConfig(name_or_path=str(model_dir)))
    return Policy(model, tok)


def _episodes(model_dir, env_id, n=8, group=4, roll=ROLL, **kwargs):
    from rftgym.envs.multiturn import make_episodes
    from rftgym.runner.episodes import play

    policy = _policy(model_dir)
    env = make_episodes(env_id, n, group, **kwargs)
    obs, _ = env.reset(seed=3)
    return policy, env, play(policy, env, list(obs), roll, group_size=group, **({} if "on_error" not in kwargs else {}))


def test_groups_share_their_start_and_env_tokens_are_masked(model_dir, ids):
    policy, env, ep = _episodes(model_dir, ids[0])
    r = ep.rollout
    secrets = [e.unwrapped.secret for e in env.envs]
    assert secrets[:4] == [secrets[0]] * 4 and secrets[4:] == [secrets[4]] * 4  # G copies, one start
    env_tokens = (r.context_mask == 1) & (r.completion_mask == 0)
    assert env_tokens.any(), "a random guesser needs a second turn: env replies must be in the transcript"
    assert (r.old_logp[env_tokens] == 0).all()
    assert ep.turns.max() > 1
    # each turn's reward sits on a policy token, and the return is their sum
    assert (r.turn_rewards[r.completion_mask == 0] == 0).all()
    assert torch.allclose(r.turn_rewards.sum(-1), r.rewards)
    text = ep.transcripts[int(np.argmax(ep.turns))]
    assert any(w in text for w in ("higher", "lower", "correct", "out of guesses"))


def test_policy_logprobs_equal_a_full_transcript_forward(model_dir, ids):
    from rftgym.runner.policy import completion_logprobs

    policy, _, ep = _episodes(model_dir, ids[0])
    r = ep.rollout
    assert ((r.context_mask == 1) & (r.completion_mask == 0)).any()
    with torch.no_grad():
        for share in (False, True):
            logp, _ = completion_logprobs(policy.model, r.prompt_ids, r.prompt_mask, r.completion_ids,
                                          r.attend_mask, share_prompts=share)
            logp = logp * r.completion_mask
            torch.testing.assert_close(logp, r.old_logp, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_gradients_on_env_positions_are_exactly_zero(model_dir, ids, algo):
    """The logits that predict env tokens (and the values there) get exactly zero gradient."""
    from rftgym.runner.policy import completion_logprobs

    policy, _, ep = _episodes(model_dir, ids[0])
    r = ep.rollout
    algorithm = rftgym.get_algorithm(algo)({"name": algo, "group_size": 4, **({"kl_coef": 0.1} if algo == "ppo" else {})})
    r.ref_logp = r.old_logp.clone()
    values_leaf = torch.randn(r.completion_ids.shape, requires_grad=True)
    r.values = values_leaf.detach() * r.completion_mask
    algorithm.advantages(r)
    if algo != "ppo":
        # A group whose G episodes tied has zero advantages (and so zero gradient everywhere):
        # give every policy token a non-zero advantage, so only the env positions may be zero.
        r.advantages = (torch.rand(r.completion_ids.shape, generator=torch.Generator().manual_seed(0)) + 0.5) \
            * r.completion_mask
    captured = {}
    head = policy.model.get_output_embeddings()
    hook = head.register_forward_hook(lambda m, i, out: captured.__setitem__("logits", out))
    try:
        out = completion_logprobs(policy.model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.attend_mask)[0]
    finally:
        hook.remove()
    logits = captured["logits"]
    logits.retain_grad()
    logp = out * r.completion_mask
    values = values_leaf * r.completion_mask if algorithm.needs_critic else None
    loss, _ = algorithm.loss(r, logp, values=values)
    loss.backward()
    T = r.completion_ids.size(1)
    grad = logits.grad[:, -T - 1:-1]                       # position t predicts completion token t
    env_tokens = (r.context_mask == 1) & (r.completion_mask == 0)
    assert env_tokens.any()
    assert (grad[env_tokens] == 0).all()
    assert grad[r.completion_mask == 1].abs().sum() > 0   # the policy tokens do learn
    if algorithm.needs_critic:
        assert (values_leaf.grad[env_tokens] == 0).all() and values_leaf.grad.abs().sum() > 0


def test_ppo_puts_each_turn_reward_at_its_last_policy_token_and_skips_env_tokens():
    from rftgym.algos.advantages import gae

    #           policy policy env env policy
    mask = torch.tensor([[1., 1., 0., 0., 1.]])
    turn = torch.tensor([[0., 2., 0., 0., 5.]])
    values = torch.zeros(1, 5)
    adv = gae(torch.tensor([7.0]), mask, values=values, turn_rewards=turn, gamma=1.0, lam=1.0)
    # returns-to-go over policy tokens only: 7, 7, -, -, 5 (the sequence reward 7 is not added again)
    assert adv.tolist() == [[7.0, 7.0, 0.0, 0.0, 5.0]]
    adv = gae(torch.tensor([7.0]), mask, values=values, turn_rewards=turn, gamma=0.5, lam=1.0)
    assert adv.tolist() == [[0.5 * 2 + 0.25 * 5, 2 + 0.5 * 5, 0.0, 0.0, 5.0]]


def _run(model_dir, env_id, out, algo="grpo", **over):
    config = {
        "model": {"name_or_path": str(model_dir)},
        "env": {"id": env_id},
        "rewards": [],
        "algo": {"name": algo, "group_size": 4},
        "rollout": {"prompts_per_step": 2, "max_new_tokens": 3, "max_turns": 3, "max_episode_tokens": 40},
        "train": {"max_steps": 2, "lr": 1e-3, "threads": 1},
        "eval": {"every": 1, "num_prompts": 4, "batch_size": 4},
        "logging": {"progress": False, "samples_every": 1},
        "save_every": 0, "output_dir": str(out),
    }
    for key, value in over.items():
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return rftgym.train(config)


ALGOS = ["grpo", "dr_grpo", "dapo", "gspo", "ppo", "rloo", "reinforce"]


@pytest.mark.parametrize("algo", ALGOS)
def test_user_env_registered_in_process_trains_with_every_algorithm(model_dir, ids, tmp_path, algo):
    from rftgym.plugins.manager import get_manager

    manager = get_manager()
    manager.load_builtins()
    assert set(manager.algorithms.names()) >= set(ALGOS)
    result = _run(model_dir, ids[0], tmp_path / algo, algo)
    rows = read_jsonl(tmp_path / algo / "metrics.jsonl")
    train = [r for r in rows if "eval/reward" not in r]
    evals = [r for r in rows if "eval/reward" in r]
    assert [r["step"] for r in train] == [1, 2]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 2   # PPO's 2 minibatches: one rollout, 2 steps
    assert all(np.isfinite(r["loss/total"]) for r in train)
    assert all(1 <= r["episode/turns_mean"] <= 3 for r in train)
    assert all("rollout/accuracy" in r for r in train)
    assert all("eval/accuracy" in r for r in evals)
    assert (result.output_dir / "final" / "model.safetensors").exists()
    samples = read_jsonl(tmp_path / algo / "samples.jsonl")
    assert samples and all("turns" in s for s in samples)


def test_rewards_must_match_the_env_kind(model_dir, ids, tmp_path):
    with pytest.raises(rftgym.errors.ConfigError, match="multi-turn env that computes its own reward.*rewards: \\[\\]"):
        _run(model_dir, ids[0], tmp_path / "a", rewards=[{"name": "math"}])
    with pytest.raises(rftgym.errors.ConfigError, match="'rewards' is empty, but env 'rftgym/Arithmetic-v0'"):
        _run(model_dir, "rftgym/Arithmetic-v0", tmp_path / "b")


@pytest.mark.parametrize("kind, match", [
    ("raises", r"raised in step\(\): ValueError: the env broke"),
    ("non_string", r"step\(\) returned a bad result: the observation must be a string .* got int"),
    ("nan_reward", r"the reward must be a finite number, got nan"),
])
def test_a_faulty_env_is_one_clear_line_or_a_counted_fault(model_dir, ids, tmp_path, kind, match):
    from rftgym.runner.episodes import EpisodeError

    with pytest.raises(EpisodeError, match=match) as info:
        _run(model_dir, ids[1], tmp_path / "raise", **{"env.kwargs": {"kind": kind}, "eval.every": 0})
    assert "\n" not in str(info.value) and ids[1] in str(info.value)
    _run(model_dir, ids[1], tmp_path / "warn", **{"env.kwargs": {"kind": kind}, "rollout.reward_errors": "warn",
                                                  "rollout.reward_fallback": -1.0})
    train = [r for r in read_jsonl(tmp_path / "warn" / "metrics.jsonl") if "eval/reward" not in r]
    assert [r["episode/faults"] for r in train] == [8.0, 8.0]
    assert [r["reward/total/mean"] for r in train] == [-1.0, -1.0]


class _AnswerOrAsk(gymnasium.Env):
    """Odd seeds judge the first turn wrong; even seeds ask again (cut short at max_turns=1)."""

    observation_space = action_space = gymnasium.spaces.Text(64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.judge = bool(self.np_random.integers(0, 2))
        return "q:", {}

    def step(self, action):
        if self.judge:
            return "", 0.0, True, False, {"correct": False}
        return " again\n", 0.0, False, False, {}


def test_episodes_cut_short_count_as_wrong_not_unknown(model_dir):
    from rftgym.runner.episodes import evaluate_episodes

    if "UserTest/AnswerOrAsk-v0" not in gymnasium.registry:
        gymnasium.register("UserTest/AnswerOrAsk-v0", entry_point=_AnswerOrAsk)
    one_turn = SimpleNamespace(**{**vars(ROLL), "max_turns": 1})
    policy, env, ep = _episodes(model_dir, "UserTest/AnswerOrAsk-v0", group=1, roll=one_turn)
    assert 0 < ep.truncated < 8  # some episodes judged, some cut short
    np.testing.assert_array_equal(ep.correct, np.zeros(8, dtype=bool))
    assert evaluate_episodes(policy, env, 8, one_turn)["eval/accuracy"] == 0.0


@pytest.mark.parametrize("kind", ["never_ends", "huge_reply"])
def test_endless_envs_and_oversize_replies_are_truncated_not_hung(model_dir, ids, tmp_path, kind):
    _run(model_dir, ids[1], tmp_path / kind, **{"env.kwargs": {"kind": kind}, "eval.every": 0,
                                                "rollout.max_turns": 4})
    train = read_jsonl(tmp_path / kind / "metrics.jsonl")
    assert [r["episode/truncated"] for r in train] == [8.0, 8.0]
    assert all(r["episode/tokens_mean"] <= 40 for r in train)
    if kind == "huge_reply":  # the reply never entered the transcript
        assert all(r["episode/turns_mean"] == 1 for r in train)


def test_check_env_passes_for_every_multi_turn_id(ids):
    from gymnasium.utils.env_checker import check_env

    from rftgym.envs.multiturn import is_multi_turn_spec
    from rftgym.plugins.manager import get_manager

    get_manager().load_builtins()
    multi = [i for i, spec in gymnasium.registry.items() if i.startswith("rftgym/") and is_multi_turn_spec(spec)]
    assert "rftgym/ToolArithmetic-v0" in multi
    for env_id in multi + [ids[0]]:
        env = gymnasium.make(env_id)
        check_env(env.unwrapped, skip_render_check=True)
        env.close()


# -- bit-identical resume after kill -9 -------------------------------------------------------

PLUGIN = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import rftgym
from multiturn_envs import GuessNumberEnv

@rftgym.hookimpl
def rftgym_register_envs(register):
    register("UserTest/GuessPlugin-v0", entry_point=GuessNumberEnv)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "RFTGYM_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"})
    return env


def _config(root: Path, model_dir: Path, name: str) -> tuple[Path, Path]:
    (root / "guess_plugin.py").write_text(PLUGIN)
    out = root / name
    config = {
        "model": {"name_or_path": str(model_dir)}, "env": {"id": "UserTest/GuessPlugin-v0"}, "rewards": [],
        "algo": {"name": "ppo", "group_size": 2, "epochs": 1, "minibatches": 1},
        "rollout": {"prompts_per_step": 2, "max_new_tokens": 3, "max_turns": 3, "max_episode_tokens": 40},
        "train": {"max_steps": 5, "lr": 1e-3, "threads": 1}, "eval": {"every": 2, "num_prompts": 4, "batch_size": 4},
        "logging": {"progress": False, "samples_every": 1}, "save_every": 1, "seed": 1,
        "output_dir": str(out), "plugins": [str(root / "guess_plugin.py")],
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, out


def _start(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rftgym", "train", "--config", str(config), "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)


def _finish(proc: subprocess.Popen) -> None:
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    assert proc.returncode == 0, err


def _no_timing(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "tokens_per_s", "memory/"))} for r in rows]


@pytest.mark.slow
def test_multi_turn_resume_after_kill_9_is_bit_identical(model_dir, tmp_path):
    ref_cfg, ref = _config(tmp_path, model_dir, "full")
    _finish(_start(ref_cfg))
    cfg, out = _config(tmp_path, model_dir, "killed")
    proc = _start(cfg)
    target = out / "checkpoints" / "step-2"
    deadline = time.monotonic() + 240
    while not target.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _finish(_start(cfg, "--resume"))
    a, b = load_file(str(ref / "final" / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert _no_timing(read_jsonl(out / "metrics.jsonl")) == _no_timing(read_jsonl(ref / "metrics.jsonl"))
    assert read_jsonl(out / "samples.jsonl") == read_jsonl(ref / "samples.jsonl")


def test_chat_models_get_env_replies_rendered_by_their_chat_template(model_dir):
    """A tool message after the assistant's turn: the template's own text for it, then the
    generation prompt; the assistant's end-of-turn token (sampled) is not repeated."""
    from rftgym.runner.episodes import encode_observation

    policy = _policy(model_dir)
    tok = policy.tokenizer
    tok.chat_template = ("{% for m in messages %}[{{ m.role }}]{{ m.content }}"
                         "{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
                         "{% if add_generation_prompt %}[assistant]{% endif %}")
    policy.chat_template = True
    ids = encode_observation(policy, {"role": "tool", "content": "42"})
    assert tok.decode(ids) == "[tool]42[assistant]"
    assert tok.decode(encode_observation(policy, "higher")) == "[user]higher[assistant]"
    policy.chat_template = False
    assert tok.decode(encode_observation(policy, {"role": "tool", "content": "42"})) == "42"
