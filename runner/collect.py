"""The trainer's collection: sample → score → (reference, critic forwards) → one Rollout."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..algos.rollout import Rollout
from ..rewards.result import RewardResult
from ..rewards.result import metrics as reward_metrics
from .distributed import any_rank
from .episodes import episode_metrics, play
from .policy import completion_logprobs


def _scores_async(env: Any) -> bool:
    """Whether ``env.step(a)`` is ``step_async(a)`` then ``step_wait()``: both defined by the class
    that defines ``step`` (a plugin's ``VectorEnv`` may have neither, or override ``step`` only)."""
    def owner(name: str) -> type | None:
        return next((k for k in type(env).__mro__ if name in vars(k)), None)

    step = owner("step")
    return step is not None and owner("step_async") is step and owner("step_wait") is step


def _cat_rollouts(parts: list, pad_id: int) -> Any:
    """Concatenate rollouts of one step (dynamic sampling refills), re-padding to a common T/P."""
    P = max(p.prompt_ids.size(1) for p in parts)
    T = max(p.completion_ids.size(1) for p in parts)
    offset, fields = 0, {}
    for f in dataclasses.fields(parts[0]):
        values = [getattr(p, f.name) for p in parts]
        if not isinstance(values[0], torch.Tensor):
            continue
        if f.name in ("prompt_ids", "prompt_mask"):  # left padding
            pad = 0 if f.name == "prompt_mask" else pad_id
            values = [F.pad(v, (P - v.size(1), 0), value=pad) for v in values]
        elif values[0].dim() == 2:  # right-padded per-token tensors
            values = [F.pad(v, (0, T - v.size(1)), value=0) for v in values]
        elif f.name == "group_ids":  # keep groups distinct across parts
            shifted = []
            for v in values:
                shifted.append(v + offset)
                offset += int(v.max()) + 1 if v.numel() else 0
            values = shifted
        fields[f.name] = torch.cat(values)
    return dataclasses.replace(parts[0], **fields)


class Collection:
    """Part of :class:`rftgym.runner.trainer.Trainer`: reads ``config``, ``policy``, ``env``,
    ``algorithm``, ``model``, ``reference``, ``critic``, ``dist``, ``device`` and the batch sizes."""

    def _sample_and_score(self, obs, prepare: bool) -> tuple[Any, Any, np.ndarray, Any, dict, dict[str, float]]:
        """Sample, then score; with ``prepare``, the forwards that need no rewards (:meth:`_prepare`)
        run while an env with ``step_async`` scores on its thread. Returns the samples, their
        rollout, the rewards, the next observations, the env's info and the seconds spent
        (``score``: waiting for the rewards)."""
        cfg, G = self.config.rollout, self.group_size
        prompts = list(obs)[::G]
        t0 = time.perf_counter()
        samples = self.policy.sample(prompts, group_size=G, max_new_tokens=cfg.max_new_tokens,
                                     temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
        t1 = time.perf_counter()
        if self._async_env:
            self.env.step_async(samples.texts)
            extra = self._prepare(samples) if prepare else {}
            t2 = time.perf_counter()
            next_obs, rewards, _, _, info = self.env.step_wait()
        else:
            extra = self._prepare(samples) if prepare else {}
            t2 = time.perf_counter()
            next_obs, rewards, _, _, info = self.env.step(samples.texts)
        t3 = time.perf_counter()
        rewards = np.asarray(rewards, dtype=np.float64)
        seconds = {"sample": t1 - t0, "prepare": t2 - t1, "score": t3 - t2}
        return samples, self._rollout(samples, rewards, extra), rewards, next_obs, info, seconds

    def _rollout(self, samples, rewards: np.ndarray, extra: dict[str, torch.Tensor]):
        n = len(samples.texts)
        fields = {"old_logp": samples.logp, **extra}
        return Rollout(prompt_ids=samples.prompt_ids, prompt_mask=samples.prompt_mask,
                       completion_ids=samples.completion_ids, completion_mask=samples.completion_mask,
                       rewards=torch.as_tensor(rewards, dtype=torch.float32, device=self.device),
                       group_ids=torch.arange(n, device=self.device) // self.group_size,
                       norm_len=self.config.rollout.max_new_tokens, **fields)

    def _collect_episodes(self, obs) -> tuple[Any, Any, dict[str, float], list[dict]]:
        """Multi-turn envs: play the current batch of episodes to the end (runner/episodes.py),
        then start the next batch. Dynamic sampling keeps the kept groups, without refills."""
        cfg = self.config.rollout
        t0 = time.perf_counter()
        lockstep = self.dist if self.fsdp else None
        ep = play(self.policy, self.env, list(obs), cfg, group_size=self.group_size,
                  on_error=cfg.reward_errors, fallback=cfg.reward_fallback, lockstep=lockstep)
        t1 = time.perf_counter()
        whole = ep.rollout
        rollout = self.algorithm.select_groups(whole)
        if not len(rollout):
            rollout = whole
        rollout = dataclasses.replace(rollout, **self._prepare(rollout))
        t2 = time.perf_counter()
        next_obs, _ = self.env.reset()
        metrics = episode_metrics(ep)
        metrics.update({"time/sample": t1 - t0, "time/prepare": t2 - t1, "time/score": 0.0,
                        "rollout/batches": 1, "rollout/kept_fraction": len(rollout) / len(whole)})
        n = min(self.config.logging.samples_per_step, len(whole))
        rows = [{"prompt": ep.prompts[i], "completion": ep.transcripts[i], "reward": float(ep.returns[i]),
                 "turns": int(ep.turns[i])} for i in range(0, len(whole), max(1, len(whole) // max(1, n)))[:n]]
        return rollout, next_obs, metrics, rows

    def collect(self, obs) -> tuple[Any, Any, dict[str, float], list[dict]]:
        """Sample and score until the algorithm keeps a full batch (dynamic sampling refills)."""
        if getattr(self.env, "multi_turn", False):
            return self._collect_episodes(obs)
        target = self.local_prompts * self.group_size
        parts, metrics_parts, sample_rows = [], [], []
        kept = tries = 0
        seconds = {"sample": 0.0, "prepare": 0.0, "score": 0.0}
        whole = None
        # Dropped groups would waste their reference/critic forwards: prepare the kept ones only.
        late = self.algorithm.filters_groups
        while tries < 4 and (any_rank(kept < target, self.dist) if self.fsdp else kept < target):
            samples, whole, rewards, obs, info, spent = self._sample_and_score(obs, prepare=not late)
            seconds = {k: v + spent[k] for k, v in seconds.items()}
            tries += 1
            scored = info.get("scored", {})
            metrics_parts.append((rewards, scored, samples))
            if not sample_rows:
                sample_rows = self._sample_rows(samples, rewards, scored)
            part = self.algorithm.select_groups(whole)
            if len(part):
                parts.append(part)
                kept += len(part)
        if not parts:  # every group was filtered out: train on the last batch unfiltered
            parts = [whole]
        rollout = parts[0] if len(parts) == 1 else _cat_rollouts(parts, self.policy.pad_id)
        if len(rollout) > target:
            rollout = rollout.select(torch.arange(target, device=self.device))
        if late:
            t0 = time.perf_counter()
            rollout = dataclasses.replace(rollout, **self._prepare(rollout))
            seconds["prepare"] += time.perf_counter() - t0
        metrics = self._rollout_metrics(metrics_parts)
        metrics.update({f"time/{k}": v for k, v in seconds.items()})
        metrics.update({"rollout/batches": tries,
                        "rollout/kept_fraction": len(rollout) / (tries * target)})
        return rollout, obs, metrics, sample_rows

    def _rollout_metrics(self, parts) -> dict[str, float]:
        # One place makes reward metrics (rewards/result.py); the refills of a step are one batch.
        results = [RewardResult(total=rewards, per_reward=dict(scored.get("per_reward") or {}),
                                faults=dict(scored.get("faults") or {})) for rewards, scored, _ in parts]
        metrics = reward_metrics(RewardResult.concat(results))
        for _, scored, _ in parts:  # the env's own metrics (a curriculum's); the last batch's win
            metrics.update(scored.get("metrics") or {})
        correct = [np.asarray(scored["correct"], dtype=bool) for _, scored, _ in parts
                   if scored.get("correct") is not None]
        if correct:
            metrics["rollout/accuracy"] = float(np.concatenate(correct).mean())
        lengths = torch.cat([p[2].completion_mask.sum(-1) for p in parts]).float()
        metrics["completion/length_mean"] = float(lengths.mean())
        metrics["completion/length_max"] = float(lengths.max())
        metrics["completion/tokens"] = float(lengths.sum())
        return metrics

    def _sample_rows(self, samples, rewards, scored) -> list[dict]:
        n = min(self.config.logging.samples_per_step, len(samples.texts))
        prompts = scored.get("prompts") or [""] * len(samples.texts)
        columns = scored.get("columns") or {}
        per_reward = scored.get("per_reward") or {}
        rows = []
        for i in range(0, len(samples.texts), max(1, len(samples.texts) // max(1, n)))[:n]:
            row = {"prompt": prompts[i], "completion": samples.texts[i], "reward": float(rewards[i])}
            # What the model was given (chat template, system prompt), not only the env's prompt.
            row["model_input"] = self.policy.format_prompt(prompts[i]) if prompts[i] else prompts[i]
            row.update({f"reward/{k}": (None if np.isnan(v[i]) else float(v[i])) for k, v in per_reward.items()})
            if "answer" in columns:
                row["answer"] = columns["answer"][i]
            rows.append(row)
        return rows

    @torch.no_grad()
    def _prepare(self, batch) -> dict[str, torch.Tensor]:
        """Reference log-probs, critic values and (when needed) recomputed old log-probs of
        ``batch`` (samples or a rollout). None of them needs the rewards."""
        temp = self.config.rollout.temperature
        # Multi-turn: forwards attend to env replies too; only policy tokens keep their values.
        attend = getattr(batch, "context_mask", None)
        keep = batch.completion_mask if attend is not None else 1
        attend = batch.completion_mask if attend is None else attend
        args = (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, attend)
        extra: dict[str, torch.Tensor] = {}
        with self.policy.autocast():
            if self.autocast is not None:
                # Cached bf16 decoding and the training forward differ slightly; use the latter.
                # FSDP ranks must run the same number of forwards, whatever their data.
                extra["old_logp"], _ = completion_logprobs(self.model, *args, temperature=temp,
                                                           share_prompts=True, one_forward=self.fsdp)
            if self.reference is not None:
                extra["ref_logp"], _ = completion_logprobs(self.reference, *args, temperature=temp, share_prompts=True)
            if self.critic is not None:
                extra["values"] = self.critic(*args).float()
        return {k: v * keep for k, v in extra.items()}

