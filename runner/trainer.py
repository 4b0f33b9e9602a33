"""The training loop: sample → score → advantages → μ epochs × minibatches → step → log.

The runner never branches on an algorithm's or a reward's name: it asks the algorithm what it
needs (``group_size``, ``needs_reference``, ``needs_critic``, ``epochs``, ``minibatches``).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import api
from ..config import RunConfig, build_config, dump_yaml, to_dict
from ..errors import RftgymError
from . import checkpoint as ckpt
from .device import autocast_dtype, configure_threads, peak_rss_gb, resolve_device, seed_everything
from .distributed import (DistInfo, all_reduce_sum, any_rank, barrier, init_distributed, reduce_metrics,
                          shutdown, write_debug_digest)
from .evaluate import evaluate
from .policy import Policy, completion_logprobs
from .run_log import METRICS, SAMPLES, RunLogger, truncate_jsonl


@dataclass
class TrainResult:
    """What :func:`train` returns: the run directory and the last metrics (eval and train)."""

    output_dir: Path
    final_metrics: dict[str, Any] = field(default_factory=dict)


def _scores_async(env: Any) -> bool:
    """Whether ``env.step(a)`` is ``step_async(a)`` then ``step_wait()``: both defined by the class
    that defines ``step`` (a plugin's ``VectorEnv`` may have neither, or override ``step`` only)."""
    def owner(name: str) -> type | None:
        return next((k for k in type(env).__mro__ if name in vars(k)), None)

    step = owner("step")
    return step is not None and owner("step_async") is step and owner("step_wait") is step


def _cat_rollouts(parts: list, pad_id: int) -> Any:
    """Concatenate rollouts of one step (dynamic sampling refills), re-padding to a common T/P."""
    import dataclasses

    import torch.nn.functional as F

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


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM, Python's MemoryError, or the CPU allocator's failure (a plain RuntimeError)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return "out of memory" in text or "can't allocate memory" in text


def _disable_dropout(module: torch.nn.Module) -> None:
    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0


class NonFiniteError(RftgymError):
    """Too many consecutive updates skipped because of non-finite losses or gradients."""


def train(config: RunConfig | dict | str | Path) -> TrainResult:
    """Run training in-process (``rftgym train`` does the same). ``config``: RunConfig, dict or YAML path."""
    if not isinstance(config, RunConfig):
        config = build_config(config)
    else:
        config.validate()
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.close()


def _lr_lambda(cfg) -> Any:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return 0.5 * (1 + math.cos(math.pi * progress)) if cfg.lr_schedule == "cosine" else 1.0 - progress

    return factor


class Trainer:
    """Wires env, rewards, policy, algorithm, optimizer, logging and checkpoints for one run."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        api.load_plugins(config.plugins)
        self.dist: DistInfo = init_distributed(config.device)
        self.device = resolve_device(config.device, self.dist.local_rank)
        configure_threads(config.train.threads, self.dist.world_size)
        self.algorithm = api.get_algorithm(config.algo.name)(config.algo)
        self.group_size = int(self.algorithm.group_size)
        B = config.rollout.prompts_per_step
        if B % self.dist.world_size:
            raise RftgymError(f"rollout.prompts_per_step={B} is not divisible by the world size "
                              f"{self.dist.world_size}; use a multiple of {self.dist.world_size}")
        self.local_prompts = B // self.dist.world_size
        # Sharded weights: every forward is a collective, so sampling, eval and saving run on all ranks.
        self.fsdp = self.dist.enabled and config.train.distributed == "fsdp"
        self.output_dir = Path(config.output_dir)
        self.start_step = 0
        self._prepare_output_dir()
        seed_everything(config.seed + 1_000_003 * self.dist.rank)
        try:
            self._build_models()
            self._build_envs()
        except BaseException:
            self._undo_prepare()  # a bad model or data path leaves no half run behind
            raise
        self._stop_signal: str | None = None
        self.logger: RunLogger | None = None

    # -- set-up ---------------------------------------------------------------------------------
    def _prepare_output_dir(self) -> None:
        cfg, out = self.config, self.output_dir
        self.resume_from = ckpt.latest_checkpoint(out) if cfg.resume else None
        if self.dist.is_main:
            holds_run = (out / "config.yaml").exists() or (out / METRICS).exists()
            if holds_run and not cfg.resume and not cfg.overwrite:
                raise RftgymError(f"output dir {str(out)!r} already holds a run; pass --resume to continue it, "
                                  f"--overwrite to replace it, or choose another --output-dir")
            if cfg.overwrite and out.exists():
                for name in ("config.yaml", METRICS, SAMPLES, "checkpoints", "final"):
                    target = out / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
            self._created = [p for p in (out / "config.yaml", out) if not p.exists()]
            try:
                out.mkdir(parents=True, exist_ok=True)
                (out / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
            except OSError as exc:
                raise RftgymError(f"output dir {str(out)!r} is not writable: {exc.strerror or exc}") from None
            if cfg.resume and self.resume_from is None:
                print(f"rftgym: warning: --resume: no complete checkpoint in {str(out)!r}; starting from step 0",
                      file=sys.stderr)
                truncate_jsonl(out / METRICS, -1)
                truncate_jsonl(out / SAMPLES, -1)
        barrier(self.dist)

    def _undo_prepare(self) -> None:
        """Remove what :meth:`_prepare_output_dir` created (set-up failed before any step ran)."""
        pipeline = getattr(self, "pipeline", None)
        if pipeline is not None:
            with contextlib.suppress(Exception):
                pipeline.close()
        if not self.dist.is_main:
            return
        for path in getattr(self, "_created", []):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()  # rmdir: only if still empty

    def _build_models(self) -> None:
        from .models import load_policy

        cfg = self.config
        model, tokenizer = load_policy(cfg.model)
        model.to(self.device)
        self.autocast = autocast_dtype(cfg.train.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        # Training mode, so that gradient checkpointing (which transformers applies only in
        # training mode) really runs; dropout off, so π_θ at the update equals π_old at sampling.
        _disable_dropout(model)
        model.train()
        self.model = model
        self.reference = None
        if self.algorithm.needs_reference:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        self.critic = None
        if self.algorithm.needs_critic:
            from .critic import ValueModel

            critic = (ValueModel.from_pretrained(cfg.model.critic, trust_remote_code=cfg.model.trust_remote_code)
                      if cfg.model.critic else ValueModel.from_causal_lm(model))
            _disable_dropout(critic)
            self.critic = critic.to(self.device).train()
        self.train_model, self.train_critic = self.model, self.critic
        if self.dist.enabled:
            from .parallel import wrap_model

            self.train_model = wrap_model(self.model, self.device, cfg.train.distributed)
            if self.critic is not None:
                self.train_critic = wrap_model(self.critic, self.device, cfg.train.distributed)
        if cfg.train.compile:
            self.train_model = torch.compile(self.train_model)
        env_system = cfg.env.kwargs.get("system_prompt")
        self.policy = Policy(self.model, tokenizer, self.device, self.autocast,
                             chat_template=cfg.model.chat_template, system_prompt=env_system)
        t = cfg.train
        groups = [{"params": [p for p in self.train_model.parameters() if p.requires_grad]}]
        if self.train_critic is not None:
            groups.append({"params": [p for p in self.train_critic.parameters() if p.requires_grad]})
        # The fused kernel (what TRL picks too) is ~4x faster than the per-tensor loop on CPU; FSDP's
        # sharded DTensor parameters keep the default implementation.
        fused = self.device.type in ("cpu", "cuda") and not (self.dist.enabled and t.distributed == "fsdp")
        self.optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps,
                                           weight_decay=t.weight_decay, fused=fused or None)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(t))

    def _build_envs(self) -> None:
        from ..rewards.pipeline import RewardPipeline

        cfg = self.config
        self.pipeline = RewardPipeline(cfg.rewards, on_error=cfg.rollout.reward_errors,
                                       fallback=cfg.rollout.reward_fallback)
        kwargs = {k: v for k, v in cfg.env.kwargs.items() if k != "system_prompt"}
        self.env = api.make_vec(cfg.env.id, num_envs=self.local_prompts * self.group_size,
                                group_size=self.group_size, reward=self.pipeline, **kwargs)
        self._async_env = _scores_async(self.env)
        self.eval_env = None
        if cfg.eval.every > 0 and (self.dist.is_main or self.fsdp):
            eval_kwargs = {**kwargs, **cfg.env.eval_kwargs}
            eval_kwargs.setdefault("order", "sequential")
            n = min(cfg.eval.batch_size, cfg.eval.num_prompts)
            self.eval_env = api.make_vec(cfg.env.id, num_envs=n, group_size=1, reward=self.pipeline, **eval_kwargs)

    # -- one rollout ----------------------------------------------------------------------------
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
        from ..algos.rollout import Rollout

        n = len(samples.texts)
        fields = {"old_logp": samples.logp, **extra}
        return Rollout(prompt_ids=samples.prompt_ids, prompt_mask=samples.prompt_mask,
                       completion_ids=samples.completion_ids, completion_mask=samples.completion_mask,
                       rewards=torch.as_tensor(rewards, dtype=torch.float32, device=self.device),
                       group_ids=torch.arange(n, device=self.device) // self.group_size, **fields)

    def collect(self, obs) -> tuple[Any, Any, dict[str, float], list[dict]]:
        """Sample and score until the algorithm keeps a full batch (dynamic sampling refills)."""
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
        rewards = np.concatenate([p[0] for p in parts])
        metrics: dict[str, float] = {"reward/total/mean": float(rewards.mean()), "reward/total/std": float(rewards.std())}
        per_reward: dict[str, list[np.ndarray]] = {}
        faults: dict[str, int] = {}
        correct = []
        for _, scored, _ in parts:
            for name, values in (scored.get("per_reward") or {}).items():
                per_reward.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
            for name, count in (scored.get("faults") or {}).items():
                faults[name] = faults.get(name, 0) + int(count)
            if scored.get("correct") is not None:
                correct.append(np.asarray(scored["correct"], dtype=bool))
        for name, chunks in per_reward.items():
            values = np.concatenate(chunks)
            finite = values[~np.isnan(values)]
            metrics[f"reward/{name}/mean"] = float(finite.mean()) if finite.size else float("nan")
            metrics[f"reward/{name}/std"] = float(finite.std()) if finite.size else float("nan")
        for name, count in faults.items():
            metrics[f"reward/{name}/faults"] = count
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
        args = (batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask)
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
        return extra

    # -- one optimizer step ---------------------------------------------------------------------
    def _micro_batches(self, mb) -> list:
        size = self.config.train.micro_batch_size
        if size <= 0 or size >= len(mb):
            return [mb]
        return [mb.select(torch.arange(i, min(i + size, len(mb)), device=self.device)) for i in range(0, len(mb), size)]

    def update(self, mb) -> dict[str, float]:
        """One optimizer step on minibatch ``mb`` (gradient accumulation over micro-batches)."""
        t0 = time.perf_counter()
        temp = self.config.rollout.temperature
        # Global normalisers: the micro-batch (and rank) losses then sum to the full-batch loss.
        counts = all_reduce_sum(torch.tensor([float(mb.completion_mask.sum()), float(len(mb))],
                                             dtype=torch.float64), self.dist)
        mb.norm_tokens, mb.norm_seqs = float(counts[0]), float(counts[1])
        # Dr. GRPO divides by the constant generation budget (as the paper and TRL do), which
        # also makes the divisor independent of how the batch is split.
        mb.norm_len = self.config.rollout.max_new_tokens
        self.optimizer.zero_grad(set_to_none=True)
        micro = self._micro_batches(mb)
        totals: dict[str, float] = {}
        loss_sum = entropy_sum = 0.0
        for i, part in enumerate(micro):
            last = i == len(micro) - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self._no_sync()
            with sync, self.policy.autocast():
                args = (part.prompt_ids, part.prompt_mask, part.completion_ids, part.completion_mask)
                # Each distinct prompt runs once; DDP/FSDP expect one forward per backward.
                logp, entropy = completion_logprobs(self.train_model, *args, temperature=temp, with_entropy=True,
                                                    share_prompts=True, one_forward=self.dist.enabled)
                values = self.train_critic(*args).float() if self.train_critic is not None else None
                loss, metrics = self.algorithm.loss(part, logp, entropy=entropy, values=values)
                # DDP averages gradients over ranks; the global normalisers already divide by the total.
                (loss * self.dist.world_size).backward()
            loss_sum += float(loss.detach())
            weight = len(part) / len(mb)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + weight * float(value)
            if entropy is not None:
                entropy_sum += float(entropy.sum())
        # The runner measures entropy itself (token mean over this rank's minibatch), whatever
        # the algorithm reports; the algorithms name their own metrics (``loss/policy``, ...).
        metrics = dict(totals)
        metrics["entropy"] = entropy_sum / max(float(mb.completion_mask.sum()), 1.0)
        metrics["loss/total"] = loss_sum * self.dist.world_size if self.dist.enabled else loss_sum
        grad_norm = self._clip(self.train_model)
        if self.train_critic is not None:
            metrics["grad_norm/critic"] = self._clip(self.train_critic)
        metrics["grad_norm"] = grad_norm
        bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            self._nonfinite += 1
            metrics["update/skipped"] = 1
            print(f"rftgym: warning: step {self._step + 1}: non-finite {', '.join(sorted(bad))}; "
                  f"update skipped ({self._nonfinite} in a row)", file=sys.stderr)
            if self._nonfinite >= self.config.train.max_nonfinite_steps:
                raise NonFiniteError(f"step {self._step + 1}: {self._nonfinite} consecutive non-finite updates "
                                     f"({', '.join(sorted(bad))}); lower train.lr or check the rewards")
        else:
            self._nonfinite = 0
            metrics["update/skipped"] = 0
            self.optimizer.step()
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        with warnings.catch_warnings():  # a skipped first update: the schedule still follows the step
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()
        metrics["time/update"] = time.perf_counter() - t0
        return metrics

    def _no_sync(self):
        stack = contextlib.ExitStack()
        for m in (self.train_model, self.train_critic):
            if m is not None and hasattr(m, "no_sync"):
                stack.enter_context(m.no_sync())
        return stack

    def _clip(self, module: torch.nn.Module) -> float:
        max_norm = self.config.train.max_grad_norm or float("inf")
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return 0.0
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, step: int, obs) -> None:
        path = ckpt.tmp_dir(self.output_dir, step)
        if self.dist.is_main:
            ckpt.prepare_tmp(self.output_dir, step)
        barrier(self.dist)
        env_state = self.env.state_dict() if hasattr(self.env, "state_dict") else {}
        ckpt.write_rank_state(path, self.dist.rank, {"env": json.dumps(env_state), "obs": list(obs),
                                                     "rewards": json.dumps(self._reward_states())})
        barrier(self.dist)
        state = {"algorithm": self.algorithm.state_dict(), "evaluated_step": self._evaluated_step,
                 "world_size": self.dist.world_size, "nonfinite": self._nonfinite}
        if self.fsdp:  # gathering the shards is a collective; rank 0 writes
            from .parallel import save_full_checkpoint

            save_full_checkpoint(path, step, self.model, self.optimizer, self.scheduler, state, self.dist, self.critic)
        if self.dist.is_main:
            if not self.fsdp:
                ckpt.write_main_state(path, step, self.model, self.optimizer, self.scheduler, state, self.critic)
            ckpt.commit(self.output_dir, step, self.config.keep_checkpoints)
        barrier(self.dist)

    def _reward_states(self) -> dict[str, Any]:
        """State of rewards that keep some (e.g. a reward model's running normalisation)."""
        states = {}
        for name, reward in self.pipeline.rewards.items():
            state_dict = getattr(reward.impl, "state_dict", None)
            if callable(state_dict):
                states[name] = state_dict()
        return states

    def _restore(self) -> Any:
        if self.fsdp:
            from .parallel import load_full_checkpoint

            state, extras = load_full_checkpoint(self.resume_from, self.dist.rank, self.model, self.optimizer,
                                                 self.scheduler, self.dist, self.critic)
        else:
            state, extras = ckpt.load(self.resume_from, self.dist.rank, self.model, self.optimizer, self.scheduler,
                                      self.critic)
        self.algorithm.load_state_dict(state.get("algorithm", {}))
        self._evaluated_step = state.get("evaluated_step", -1)
        self._nonfinite = state.get("nonfinite", 0)
        for name, reward_state in json.loads(extras.get("rewards", "{}")).items():
            self.pipeline.rewards[name].impl.load_state_dict(reward_state)
        if hasattr(self.env, "load_state_dict"):
            self.env.load_state_dict(json.loads(extras["env"]))
        step = int(state["step"])
        if self.dist.is_main:
            truncate_jsonl(self.output_dir / METRICS, step)
            truncate_jsonl(self.output_dir / SAMPLES, step)
        return step, tuple(extras["obs"])

    # -- the loop -------------------------------------------------------------------------------
    def _install_signals(self) -> dict:
        previous = {}
        if threading.current_thread() is not threading.main_thread():
            return previous

        def handler(signum, frame):
            if self._stop_signal is not None:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def _maybe_eval(self, step: int, final: bool = False) -> dict[str, float]:
        cfg = self.config.eval
        if self.eval_env is None or step == self._evaluated_step:
            return {}
        due = final or step == 0 or (step // cfg.every) > (self._evaluated_step // cfg.every)
        if not due:
            return {}
        # Scoring held-out prompts must not move a reward's running statistics (e.g. a reward
        # model's normalisation), or evaluation would change the training signal.
        reward_states = self._reward_states()
        metrics = evaluate(self.policy, self.eval_env, cfg.num_prompts,
                           cfg.max_new_tokens or self.config.rollout.max_new_tokens, seed=self.config.seed)
        for name, state in reward_states.items():
            self.pipeline.rewards[name].impl.load_state_dict(state)
        self._evaluated_step = step
        self.logger.log_eval(step, metrics)
        return metrics

    def run(self) -> TrainResult:
        cfg = self.config
        self._step = 0
        self._evaluated_step = -1
        self._nonfinite = 0
        if self.resume_from is not None:
            self._step, obs = self._restore()
        else:
            obs, _ = self.env.reset(seed=cfg.seed + 7919 * self.dist.rank)
        self.logger = RunLogger(self.output_dir, self.dist.is_main, cfg.train.max_steps, self._step,
                                progress=cfg.logging.progress and not cfg.logging.quiet,
                                tensorboard=cfg.logging.tensorboard, wandb=cfg.logging.wandb,
                                wandb_project=cfg.logging.wandb_project, config=to_dict(cfg))
        previous = self._install_signals()
        last_train: dict[str, float] = {}
        last_eval: dict[str, float] = {}
        last_saved = self._step
        try:
            while self._step < cfg.train.max_steps:
                last_eval = self._maybe_eval(self._step) or last_eval
                rollout, obs, rmetrics, rows = self.collect(obs)
                self.algorithm.advantages(rollout)
                rmetrics.update(self._advantage_metrics(rollout))
                rmetrics.update(self.algorithm.rollout_metrics())
                rmetrics = reduce_metrics(rmetrics, self.dist)
                rmetrics["rollout/sequences"] = len(rollout) * self.dist.world_size
                rollout_start = self._step
                # Seeded by position, not carried state, so a resumed run shuffles identically.
                generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rollout_start)
                for _ in range(self.algorithm.epochs):
                    for mb in rollout.minibatches(self.algorithm.minibatches, generator):
                        t0 = time.perf_counter()
                        umetrics = reduce_metrics(self.update(mb), self.dist)
                        self._step += 1
                        line = {**rmetrics, **umetrics}
                        elapsed = (rmetrics["time/sample"] + rmetrics["time/prepare"] + rmetrics["time/score"]
                                   + (time.perf_counter() - t0))
                        line["tokens_per_s"] = rmetrics["completion/tokens"] * self.dist.world_size / max(elapsed, 1e-9)
                        line["memory/peak_rss_gb"] = peak_rss_gb()
                        if self.device.type == "cuda":
                            line["memory/peak_allocated_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                        self.logger.log_train(self._step, line)
                        last_train = line
                        if self._step >= cfg.train.max_steps:
                            break
                    if self._step >= cfg.train.max_steps:
                        break
                self.algorithm.on_step_end(last_train)
                if cfg.logging.samples_every and (rollout_start // cfg.logging.samples_every
                                                  != self._step // cfg.logging.samples_every or rollout_start == 0):
                    self.logger.log_samples(self._step, rows)
                # A signal during the last step: finishing (final eval, checkpoint, final/) is the
                # quickest safe point, and the message below would otherwise name a step never saved.
                # Decided together: a rank that saves while another trains on would hang both.
                stop = any_rank(self._stop_signal is not None, self.dist) and self._step < cfg.train.max_steps
                due = cfg.save_every and (self._step // cfg.save_every) > (last_saved // cfg.save_every)
                if self._step < cfg.train.max_steps:
                    # Evaluate before saving, so a resumed run never repeats this step's eval line.
                    last_eval = self._maybe_eval(self._step) or last_eval
                    if due or stop:
                        self.save_checkpoint(self._step, obs)
                        last_saved = self._step
                if stop:
                    print(f"\nrftgym: {self._stop_signal} received; checkpoint written at step {self._step}. "
                          f"Resume with: rftgym train <same arguments> --output-dir {cfg.output_dir} --resume",
                          file=sys.stderr)
                    raise SystemExit(130)
            last_eval = self._maybe_eval(self._step, final=True) or last_eval
            if self._step > last_saved or not ckpt.list_checkpoints(self.output_dir):
                self.save_checkpoint(self._step, obs)
            self._save_final()
            write_debug_digest(self.model, self.dist, self._step)  # only with $RFTGYM_DEBUG_DIGEST_DIR
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as exc:
            if not _is_out_of_memory(exc):
                raise
            raise RftgymError(f"out of memory at step {self._step + 1} on {self.device}: lower "
                              f"rollout.prompts_per_step or rollout.max_new_tokens, set train.micro_batch_size, "
                              f"or enable model.gradient_checkpointing") from exc
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
        final = {k: v for k, v in {**last_train, **last_eval}.items()
                 if k.startswith(("eval/", "reward/total", "loss/total"))}
        final["step"] = self._step
        return TrainResult(self.output_dir, final)

    def _advantage_metrics(self, rollout) -> dict[str, float]:
        adv = rollout.advantages
        mask = rollout.completion_mask.bool()
        values = adv[mask] if adv.dim() == 2 else adv
        if values.numel() == 0:
            return {}
        return {"adv/mean": float(values.mean()), "adv/std": float(values.std()) if values.numel() > 1 else 0.0,
                "adv/max": float(values.max()), "adv/min": float(values.min())}

    def _save_final(self) -> None:
        from .parallel import export_pretrained

        final = self.output_dir / "final"
        tmp = self.output_dir / ".tmp-final"
        if self.dist.is_main and tmp.exists():
            shutil.rmtree(tmp)
        export_pretrained(self.model, self.policy.tokenizer, tmp, self.dist)  # all ranks: gathers FSDP shards
        if not self.dist.is_main:
            barrier(self.dist)
            return
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        barrier(self.dist)

    def close(self) -> None:
        for closer in (getattr(self, "env", None), getattr(self, "eval_env", None)):
            if closer is not None:
                closer.close()
        if getattr(self, "pipeline", None) is not None:
            self.pipeline.close()
        if self.logger is not None:
            self.logger.close()
        shutdown(self.dist)
