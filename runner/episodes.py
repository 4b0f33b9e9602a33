"""Multi-turn episodes, played turn by turn and batched across episodes, as one Rollout.

Layout of an episode in the rollout (see ``algos/rollout.py``): the first prompt is the
prompt (left-padded), and the "completion" is the transcript after it, policy turns and env
replies interleaved, right-padded::

    prompt | turn 1 (policy) | reply 1 (env) | turn 2 (policy) | ... | turn K (policy)
    completion_mask:  1 ... 1 |   0 ... 0     |  1 ... 1        |     |  1 ... 1
    context_mask:     1 ... 1 |   1 ... 1     |  1 ... 1        |     |  1 ... 1

Each turn is sampled with the transcript as context, as token ids: nothing is re-tokenized,
so the log-probs the sampler saw are those a full-transcript forward computes. Env tokens get
mask 0, so they carry no log-prob, KL, entropy or value loss. Each turn's reward sits at its
last policy token in ``turn_rewards``; ``rewards`` is the return (their sum).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..algos.rollout import Rollout
from ..envs.multiturn import observation_text
from ..errors import RftgymError
from .distributed import any_rank


class EpisodeError(RftgymError):
    """A multi-turn env misbehaved and ``rollout.reward_errors`` is ``raise``."""


def encode_observation(policy: Any, obs: str | dict) -> list[int]:
    """Token ids of an env reply as it continues the transcript.

    Without a chat template the reply's text is appended as is. With one, the reply is a
    message (a plain string is the user's) rendered by the tokenizer's template: the text the
    template adds after an assistant turn when the message and a generation prompt follow.
    """
    tok = policy.tokenizer
    if not getattr(policy, "chat_template", False):
        return tok(observation_text(obs), add_special_tokens=False)["input_ids"]
    message = obs if isinstance(obs, dict) else {"role": "user", "content": obs}
    base = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    before = tok.apply_chat_template(base, tokenize=False)
    after = tok.apply_chat_template(base + [dict(message)], tokenize=False, add_generation_prompt=True)
    if not after.startswith(before):  # a template that rewrites earlier turns: the message alone
        after, before = tok.apply_chat_template([dict(message)], tokenize=False, add_generation_prompt=True), ""
    text = after[len(before):]
    eos = tok.eos_token or ""
    if eos and text.startswith(eos):  # the sampled turn already ended with the end-of-turn token
        text = text[len(eos):]
    return tok(text, add_special_tokens=False)["input_ids"]


@dataclass
class _Episode:
    prompt: list[int]
    ids: list[int] = field(default_factory=list)
    policy: list[int] = field(default_factory=list)
    logp: list[float] = field(default_factory=list)
    reward_at: list[tuple[int, float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    done: bool = False
    truncated: bool = False
    fault: bool = False
    correct: bool | None = None
    turns: int = 0


@dataclass
class Episodes:
    """A played batch: the rollout tensors and what the runner logs."""

    rollout: Rollout
    returns: np.ndarray
    correct: np.ndarray | None
    faults: int
    truncated: int
    turns: np.ndarray
    transcripts: list[str]
    prompts: list[str]


def _pad_left(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def play(policy: Any, env: Any, prompts: list[str], cfg: Any, *, group_size: int = 1, greedy: bool = False,
         on_error: str = "raise", fallback: float = 0.0, lockstep: Any = None) -> Episodes:
    """Play the env's current batch of episodes (first prompts ``prompts``) to the end.

    ``cfg`` is the rollout config (``max_new_tokens`` per turn, ``max_turns``,
    ``max_episode_tokens``, sampling settings). An env fault (a raising ``step``, a bad
    observation or reward) raises :class:`EpisodeError` with ``on_error="raise"``; with
    ``"warn"`` the episode ends with the ``fallback`` reward for that turn and is counted.
    An episode that runs out of turns or tokens is truncated (counted, not an error).
    """
    budget = int(cfg.max_episode_tokens)
    prompt_ids, prompt_mask = policy.encode_prompts(prompts)
    eps = [_Episode(prompt=row[m.bool()].tolist()) for row, m in zip(prompt_ids.cpu(), prompt_mask.cpu())]
    for turn in range(int(cfg.max_turns)):
        active = [i for i, e in enumerate(eps) if not e.done]
        if not (any_rank(bool(active), lockstep) if lockstep is not None else active):
            break
        # Sharded weights (FSDP): a rank with no running episode still joins the others' forwards.
        rows = [eps[i].prompt + eps[i].ids for i in active] or [[policy.pad_id]]
        left = [budget - len(eps[i].ids) for i in active] or [1]
        ids, mask = _pad_left(rows, policy.pad_id)
        samples = policy.sample_encoded(ids, mask, max_new_tokens=max(1, min(int(cfg.max_new_tokens), max(left))),
                                        temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, greedy=greedy)
        if not active:
            continue
        actions: list[str | None] = [None] * len(eps)
        for j, i in enumerate(active):
            e = eps[i]
            n = int(samples.completion_mask[j].sum())
            if n > left[j]:  # this turn overran the episode's token budget: cut and truncate
                n, e.truncated = left[j], True
            e.ids += samples.completion_ids[j, :n].tolist()
            e.policy += [1] * n
            e.logp += samples.logp[j, :n].tolist()
            e.texts.append(samples.texts[j] if n == int(samples.completion_mask[j].sum())
                           else policy.decode(samples.completion_ids[j:j + 1, :n], samples.completion_mask[j:j + 1, :n])[0])
            e.turns += 1
            if e.truncated:
                e.done = True
                env.stop(i)
            else:
                actions[i] = e.texts[-1]
        obs, rewards, terminated, truncated, info = env.step(actions)
        for i in active:
            e = eps[i]
            if actions[i] is None:
                continue
            error = info["errors"][i]
            if error is not None:
                if on_error == "raise":
                    raise EpisodeError(f"{error} (turn {e.turns}; set rollout.reward_errors=warn to count it instead)")
                print(f"rftgym: warning: {error}; episode ended with reward {fallback:g}", file=sys.stderr)
                e.fault, e.done = True, True
                e.reward_at.append((len(e.ids) - 1, float(fallback)))
                continue
            e.reward_at.append((len(e.ids) - 1, float(rewards[i])))
            step_info = info["infos"][i]
            if "correct" in step_info and step_info["correct"] is not None:
                e.correct = bool(step_info["correct"])
            if terminated[i] or truncated[i]:
                e.done, e.truncated = True, bool(truncated[i]) and not terminated[i]
                continue
            reply = encode_observation(policy, obs[i])
            if len(e.ids) + len(reply) >= budget:  # no room for the reply and another turn
                e.done = e.truncated = True
                env.stop(i)
                continue
            e.ids += reply
            e.policy += [0] * len(reply)
            e.logp += [0.0] * len(reply)
            e.texts.append(observation_text(obs[i]))
    for i, e in enumerate(eps):
        if not e.done:  # out of turns
            e.done = e.truncated = True
            env.stop(i)
    return _assemble(policy, eps, prompt_ids, prompt_mask, prompts, group_size, budget)


def _assemble(policy: Any, eps: list[_Episode], prompt_ids, prompt_mask, prompts, group_size: int,
              budget: int) -> Episodes:
    N, T = len(eps), max(1, max(len(e.ids) for e in eps))
    ids = torch.full((N, T), policy.pad_id, dtype=torch.long)
    pol = torch.zeros((N, T), dtype=torch.long)
    ctx = torch.zeros((N, T), dtype=torch.long)
    logp = torch.zeros((N, T), dtype=torch.float32)
    turn_rewards = torch.zeros((N, T), dtype=torch.float32)
    for i, e in enumerate(eps):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids, dtype=torch.long)
        pol[i, :n] = torch.tensor(e.policy, dtype=torch.long)
        ctx[i, :n] = 1
        logp[i, :n] = torch.tensor(e.logp, dtype=torch.float32)
        for pos, r in e.reward_at:
            turn_rewards[i, pos] += r
    returns = turn_rewards.sum(-1).double().numpy()
    device = policy.device
    rollout = Rollout(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=ids.to(device),
                      completion_mask=pol.to(device), old_logp=logp.to(device),
                      rewards=torch.as_tensor(returns, dtype=torch.float32, device=device),
                      group_ids=torch.arange(N, device=device) // group_size, norm_len=budget,
                      context_mask=ctx.to(device), turn_rewards=turn_rewards.to(device))
    # An episode cut short (out of turns or tokens, or a fault) never gave its answer: wrong,
    # not unknown - else one truncated episode would erase the batch's accuracy.
    correct = None
    if any(e.correct is not None for e in eps):
        correct = np.array([bool(e.correct) for e in eps])
    transcripts = ["".join(e.texts) for e in eps]
    return Episodes(rollout=rollout, returns=returns, correct=correct, faults=sum(e.fault for e in eps),
                    truncated=sum(e.truncated for e in eps), turns=np.array([e.turns for e in eps]),
                    transcripts=transcripts, prompts=list(prompts))


def episode_metrics(ep: Episodes) -> dict[str, float]:
    """The batch's episode metrics (``episode/*``), beside the usual reward and length ones."""
    n = len(ep.returns)
    policy_tokens = ep.rollout.completion_mask.sum(-1).float()
    metrics = {
        "reward/total/mean": float(np.mean(ep.returns)),
        "reward/total/std": float(np.std(ep.returns, ddof=1)) if n > 1 else 0.0,
        "reward/total/faults": float(ep.faults),
        "episode/faults": float(ep.faults),
        "episode/truncated": float(ep.truncated),
        "episode/turns_mean": float(ep.turns.mean()),
        "episode/tokens_mean": float(ep.rollout.context_mask.sum(-1).float().mean()),
        "completion/length_mean": float(policy_tokens.mean()),
        "completion/length_max": float(policy_tokens.max()),
        "completion/tokens": float(policy_tokens.sum()),
    }
    if ep.correct is not None:
        metrics["rollout/accuracy"] = float(ep.correct.mean())
    return metrics


def evaluate_episodes(policy: Any, env: Any, num_prompts: int, cfg: Any, seed: int = 0) -> dict[str, float]:
    """Greedy episodes on the held-out env: ``eval/reward`` (mean return) and, when the env
    reports ``info["correct"]`` at the end, ``eval/accuracy``."""
    obs, _ = env.reset(seed=seed)
    returns: list[float] = []
    correct: list[bool] = []
    has_check = True
    for _ in range(math.ceil(num_prompts / env.num_envs)):
        ep = play(policy, env, list(obs), cfg, greedy=True, on_error="warn", fallback=0.0)
        take = min(env.num_envs, num_prompts - len(returns))
        returns.extend(ep.returns[:take].tolist())
        if ep.correct is None:
            has_check = False
        else:
            correct.extend(ep.correct[:take].tolist())
        obs, _ = env.reset()
    metrics = {"eval/reward": float(np.mean(returns)), "eval/num_prompts": len(returns)}
    if has_check:
        metrics["eval/accuracy"] = float(np.mean(correct))
    return metrics
