"""Held-out evaluation: greedy pass@1 (``eval/accuracy``) and mean reward (``eval/reward``)."""
from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..errors import ConfigError, RftgymError
from . import build
from .device import configure_threads, resolve_device
from .checks import offline_unless_hub_reachable
from .models import load_policy
from .policy import Policy


def evaluate(policy: Policy, env, num_prompts: int, max_new_tokens: int, seed: int = 0) -> dict[str, float]:
    """Greedy completions for the first ``num_prompts`` held-out prompts of ``env`` (sequential order).

    ``eval/accuracy`` is the fraction the env's answer check accepts; an env without one
    reports ``eval/reward`` only.
    """
    obs, _ = env.reset(seed=seed)
    available = _rows(env)
    if available is not None and 0 < available < num_prompts:
        # Asking for more prompts than the split holds must not count its rows twice.
        _warn_once(f"rftgym: warning: evaluation asked for {num_prompts} prompts but the held-out split has "
                   f"{available} rows; evaluating on those {available} (eval.num_prompts / --num-prompts)")
        num_prompts = available
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


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        print(message, file=sys.stderr)


def _rows(env: Any) -> int | None:
    """Rows of the env's prompt source, when it knows (a finite table); None for streams."""
    try:
        return len(env.source)
    except (AttributeError, TypeError):
        return None


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
        offline_unless_hub_reachable(model)
        net, tokenizer = load_policy(ModelConfig(name_or_path=model))
        checks = build.SharedRewards(pipeline)
        try:
            env = build.make_vec(env_id, num_envs=min(256, num_prompts), group_size=1, reward=pipeline,
                                 reward_resolver=checks, split=split, order="sequential", **(env_kwargs or {}))
        except (ValueError, TypeError) as exc:
            if isinstance(exc, RftgymError):
                raise
            raise ConfigError(f"env {env_id!r} (--split {split!r}, --env-kwarg) refused its arguments: "
                              f"{type(exc).__name__}: {exc}") from None
        try:
            # as training does: the model's chat template unless the env renders it itself
            templated = bool((env_kwargs or {}).get("chat_template"))
            policy = Policy(net.to(dev), tokenizer, dev, system_prompt=getattr(env, "system_prompt", None),
                            chat_template=False if templated else "auto", model_name=model)
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
