"""The training loop: sample → score → advantages → μ epochs × minibatches → step → log.

The runner never branches on an algorithm's or a reward's name: it asks the algorithm what it
needs (``group_size``, ``needs_reference``, ``needs_critic``, ``epochs``, ``minibatches``).
The parts come from the composition root (runner/build.py); the trainer's jobs live in one
file each: the run directory (run_dir.py), collection (collect.py), the update (update.py)
and checkpoints (resume.py).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, to_dict
from ..errors import RftgymError
from . import build
from . import checkpoint as ckpt
from .collect import Collection, _scores_async  # noqa: F401  (_scores_async: tested from here)
from .device import autocast_dtype, configure_threads, peak_rss_gb, resolve_device, seed_everything
from .distributed import DistInfo, any_rank, init_distributed, reduce_metrics, shutdown, write_debug_digest
from .episodes import evaluate_episodes
from .evaluate import evaluate
from .parallel import wrap_model
from .policy import Policy
from .resume import Checkpoints
from .run_dir import RunDirectory
from .run_log import RunLogger
from .update import NonFiniteError, Update  # noqa: F401  (NonFiniteError: public here)


@dataclass
class TrainResult:
    """What :func:`train` returns: the run directory and the last metrics (eval and train)."""

    output_dir: Path
    final_metrics: dict[str, Any] = field(default_factory=dict)


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM, Python's MemoryError, or the CPU allocator's failure (a plain RuntimeError)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return "out of memory" in text or "can't allocate memory" in text


def train(config: RunConfig | dict | str | Path) -> TrainResult:
    """Run training in-process (``rftgym train`` does the same). ``config``: RunConfig, dict or YAML path."""
    if not isinstance(config, RunConfig):
        config = build.resolve_config(config)
    else:
        config.validate()
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.close()


class Trainer(RunDirectory, Collection, Update, Checkpoints):
    """Wires env, rewards, policy, algorithm, optimizer, logging and checkpoints for one run."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        build.load_plugins(config.plugins)
        # Every name resolves before any work: an unknown one fails here with nothing written.
        build.ROOT_NAMES.check_names(config)
        self.algorithm = build.build_algorithm(config)
        self.dist: DistInfo = init_distributed(config.device)
        self.device = resolve_device(config.device, self.dist.local_rank)
        configure_threads(config.train.threads, self.dist.world_size)
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
            self.envs = build.build_envs(config, self.local_prompts, self.group_size,
                                         with_eval=config.eval.every > 0 and (self.dist.is_main or self.fsdp))
            self.env, self.eval_env = self.envs.train, self.envs.eval
            self._async_env = _scores_async(self.env)
            self._wire_models()
        except BaseException:
            self._undo_prepare()  # a bad model or data path leaves no half run behind
            raise
        self._stop_signal: str | None = None
        self.logger: RunLogger | None = None

    def _wire_models(self) -> None:
        cfg = self.config
        models = build.build_models(cfg, self.algorithm, self.device)
        self.model, self.reference, self.critic = models.model, models.reference, models.critic
        self.autocast = autocast_dtype(cfg.train.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.train_model, self.train_critic = self.model, self.critic
        if self.dist.enabled:
            self.train_model = wrap_model(self.model, self.device, cfg.train.distributed)
            if self.critic is not None:
                self.train_critic = wrap_model(self.critic, self.device, cfg.train.distributed)
        if cfg.train.compile:
            self.train_model = torch.compile(self.train_model)
        # The env owns its system prompt; the policy applies it when it applies the chat template.
        self.policy = Policy(self.model, models.tokenizer, self.device, self.autocast,
                             chat_template=cfg.model.chat_template,
                             system_prompt=getattr(self.env, "system_prompt", None))
        self._build_optimizer()

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
        # The eval env scores through a frozen view of the pipeline (runner/build.py): held-out
        # prompts never move a reward's running statistics, so evaluation never changes training.
        if getattr(self.eval_env, "multi_turn", False):
            metrics = evaluate_episodes(self.policy, self.eval_env, cfg.num_prompts, self.config.rollout,
                                        seed=self.config.seed)
        else:
            metrics = evaluate(self.policy, self.eval_env, cfg.num_prompts,
                               cfg.max_new_tokens or self.config.rollout.max_new_tokens, seed=self.config.seed)
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
                lines, t0 = [], time.perf_counter()
                for _ in range(self.algorithm.epochs):
                    for mb in rollout.minibatches(self.algorithm.minibatches, generator):
                        lines.append({**rmetrics, **reduce_metrics(self.update(mb), self.dist)})
                        self._step += 1
                        if self._step >= cfg.train.max_steps:
                            break
                    if self._step >= cfg.train.max_steps:
                        break
                # Throughput of the whole rollout: its tokens over its collection and all of its
                # updates (μ epochs × minibatches), the same on each of its lines.
                elapsed = (rmetrics["time/sample"] + rmetrics["time/prepare"] + rmetrics["time/score"]
                           + time.perf_counter() - t0)
                tokens_per_s = rmetrics["completion/tokens"] * self.dist.world_size / max(elapsed, 1e-9)
                for step, line in enumerate(lines, start=rollout_start + 1):
                    line["tokens_per_s"] = tokens_per_s
                    line["memory/peak_rss_gb"] = peak_rss_gb()
                    if self.device.type == "cuda":
                        line["memory/peak_allocated_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                    self.logger.log_train(step, line)
                    last_train = line
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

    def close(self) -> None:
        if getattr(self, "envs", None) is not None:
            self.envs.close()
        if self.logger is not None:
            self.logger.close()
        shutdown(self.dist)
