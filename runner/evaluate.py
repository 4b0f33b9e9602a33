"""Held-out evaluation: greedy pass@1 (``eval/accuracy``) and mean reward (``eval/reward``)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..config import ModelConfig
from . import build
from .device import configure_threads, resolve_device
from .models import load_policy
from .policy import Policy


def evaluate(policy: Policy, env, num_prompts: int, max_new_tokens: int, seed: int = 0) -> dict[str, float]:
    """Greedy completions for the first ``num_prompts`` held-out prompts of ``env`` (sequential order).

    ``eval/accuracy`` is the fraction the env's answer check accepts; an env without one
    reports ``eval/reward`` only.
    """
    obs, _ = env.reset(seed=seed)
    rewards: list[float] = []
    correct: list[bool] = []
    lengths: list[int] = []
    has_check = True
    batches = math.ceil(num_prompts / env.num_envs)
    for _ in range(batches):
        prompts = list(obs)
        samples = policy.sample(prompts, group_size=1, max_new_tokens=max_new_tokens, greedy=True)
        obs, reward, _, _, info = env.step(samples.texts)
        take = min(len(prompts), num_prompts - len(rewards))
        rewards.extend(np.asarray(reward, dtype=float)[:take].tolist())
        lengths.extend(samples.completion_mask.sum(-1)[:take].tolist())
        checked = info.get("scored", {}).get("correct")
        if checked is None:
            has_check = False
        else:
            correct.extend(np.asarray(checked, dtype=bool)[:take].tolist())
    metrics = {"eval/reward": float(np.mean(rewards)), "eval/num_prompts": len(rewards),
               "eval/completion_length": float(np.mean(lengths))}
    if has_check:
        metrics["eval/accuracy"] = float(np.mean(correct))
    return metrics


def evaluate_model(model: str, env_id: str, rewards: list[dict[str, Any]], num_prompts: int = 200,
                   max_new_tokens: int = 8, split: str = "test", env_kwargs: dict[str, Any] | None = None,
                   device: str = "auto") -> dict[str, Any]:
    """``rftgym eval``: load ``model`` and evaluate it on ``env_id``'s held-out split.

    The reward names and the env id are resolved (and rejected with the closest name) by the
    composition root before the model loads.
    """
    if build.is_multi_turn(env_id):
        return _evaluate_episodes(model, env_id, num_prompts, max_new_tokens, split, env_kwargs, device)
    pipeline = build.pipeline_from_specs(rewards)
    try:
        build.ensure_env(env_id)
        configure_threads(0)
        dev = resolve_device(device)
        net, tokenizer = load_policy(ModelConfig(name_or_path=model))
        checks = build.SharedRewards(pipeline)
        env = build.make_vec(env_id, num_envs=min(256, num_prompts), group_size=1, reward=pipeline,
                             reward_resolver=checks, split=split, order="sequential", **(env_kwargs or {}))
        try:
            policy = Policy(net.to(dev), tokenizer, dev, system_prompt=getattr(env, "system_prompt", None))
            metrics = evaluate(policy, env, num_prompts, max_new_tokens)
        finally:
            env.close()
            checks.close()
    finally:
        pipeline.close()
    return {"model": model, "env": env_id, "split": split, **metrics}


def _evaluate_episodes(model: str, env_id: str, num_prompts: int, max_new_tokens: int, split: str,
                       env_kwargs: dict[str, Any] | None, device: str) -> dict[str, Any]:
    """``rftgym eval`` on a multi-turn env: greedy episodes; the env computes the rewards."""
    import dataclasses

    from ..config import RolloutConfig
    from ..envs.multiturn import accepts_keyword, make_episodes
    from .episodes import evaluate_episodes

    configure_threads(0)
    dev = resolve_device(device)
    net, tokenizer = load_policy(ModelConfig(name_or_path=model))
    kwargs = dict(env_kwargs or {})
    if accepts_keyword(env_id, "split"):
        kwargs["split"] = split
    env = make_episodes(env_id, min(256, num_prompts), 1, **kwargs)
    try:
        policy = Policy(net.to(dev), tokenizer, dev, system_prompt=env.system_prompt)
        rollout = dataclasses.replace(RolloutConfig(), max_new_tokens=max_new_tokens)  # per turn
        metrics = evaluate_episodes(policy, env, num_prompts, rollout)
    finally:
        env.close()
    return {"model": model, "env": env_id, "split": split, **metrics}
