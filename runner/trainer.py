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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, to_dict
from ..errors import ConfigError, RftgymError
from . import build
from . import checkpoint as ckpt
from .collect import Collection, _scores_async  # noqa: F401  (_scores_async: tested from here)
from .device import (autocast_dtype, children_rss_gb, configure_threads, peak_rss_gb, release_host_memory,
                     resolve_device, seed_everything)
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
    except SystemExit:
        raise  # a signal's stop: its checkpoint is the run's
    except BaseException:
        trainer.remove_failed_start()
        raise
    finally:
        trainer.close()


STALE_STEPS = 20
"""Steps in a row with all-zero advantages before the run warns that it is not learning."""


class _StopBeforeUpdate(Exception):
    """A stop signal arrived before the rollout's first optimizer step."""


def _combine_updates(updates: list[dict[str, float]]) -> dict[str, float]:
    """One line for a rollout's updates: means, except counts and times, which add up."""
    if not updates:
        return {}
    summed = ("time/update", "update/skipped")
    keys = dict.fromkeys(k for u in updates for k in u)
    out = {}
    for key in keys:
        values = [u[key] for u in updates if key in u]
        out[key] = sum(values) if key in summed else sum(values) / len(values)
    out["lr"] = updates[0].get("lr", out.get("lr"))
    return out


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
        self._first_update_done = False
        self.logger: RunLogger | None = None

    def _wire_models(self) -> None:
        cfg = self.config
        models = build.build_models(cfg, self.algorithm, self.device)
        if cfg.model.chat_template is True and not getattr(models.tokenizer, "chat_template", None):
            raise ConfigError(f"model.chat_template is true but the tokenizer of {cfg.model.name_or_path!r} has "
                              f"no chat template; set model.chat_template: false, or use a model that has one")
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
        # An env given ``chat_template=True`` (and a tokenizer) renders the template itself.
        self.policy = Policy(self.model, models.tokenizer, self.device, self.autocast,
                             chat_template=False if cfg.env.kwargs.get("chat_template") else cfg.model.chat_template,
                             system_prompt=getattr(self.env, "system_prompt", None),
                             model_name=cfg.model.name_or_path)
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
        self._step = 0  # rollouts completed: the unit of train.max_steps, save_every, eval.every
        self._updates = 0  # optimizer steps completed (epochs × minibatches per rollout)
        self._evaluated_step = -1
        self._nonfinite = 0
        self._stale_steps = 0
        if self.resume_from is not None:
            self._step, obs = self._restore()
        else:
            obs, _ = self.env.reset(seed=cfg.seed + 7919 * self.dist.rank)
        self._first_step = self._step
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
                # Where a stop before this rollout's first update resumes from: nothing the
                # update changes (weights, optimizer, algorithm) has moved yet, only these.
                before = self._resume_point(obs)
                try:
                    last_train, obs = self._train_step(obs)
                except _StopBeforeUpdate:
                    self.save_checkpoint(self._step, before)
                    self._exit_on_signal()
                stop = any_rank(self._stop_signal is not None, self.dist) and self._step < cfg.train.max_steps
                due = cfg.save_every and (self._step // cfg.save_every) > (last_saved // cfg.save_every)
                if self._step < cfg.train.max_steps:
                    # Evaluate before saving, so a resumed run never repeats this step's eval line.
                    if not stop:
                        last_eval = self._maybe_eval(self._step) or last_eval
                    if due or stop:
                        self.save_checkpoint(self._step, self._resume_point(obs))
                        last_saved = self._step
                if stop:
                    self._exit_on_signal()
            last_eval = self._maybe_eval(self._step, final=True) or last_eval
            if cfg.save_last and (self._step > last_saved or not ckpt.list_checkpoints(self.output_dir)):
                self.save_checkpoint(self._step, self._resume_point(obs))
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

    def _exit_on_signal(self) -> None:
        print(f"\nrftgym: {self._stop_signal} received; checkpoint written at step {self._step}. "
              f"Resume with: rftgym train <same arguments> --output-dir {self.config.output_dir} --resume",
              file=sys.stderr)
        raise SystemExit(130)

    def _train_step(self, obs) -> tuple[dict[str, float], Any]:
        """One step of the run: collect one rollout, then μ epochs × minibatches optimizer steps.

        Returns the step's metrics line (the updates' metrics averaged) and the next observations.
        Raises :class:`_StopBeforeUpdate` when a signal arrives before the first optimizer step.
        """
        cfg = self.config
        rollout, obs, rmetrics, rows = self.collect(obs)
        release_host_memory()  # the sampling caches, before the update allocates its activations
        self._check_stop_before_update()
        self._check_applicable(rmetrics)
        self.algorithm.advantages(rollout)
        rmetrics.update(self._advantage_metrics(rollout))
        rmetrics.update(self.algorithm.rollout_metrics())
        rmetrics = reduce_metrics(rmetrics, self.dist)
        rmetrics["rollout/sequences"] = len(rollout) * self.dist.world_size
        # Seeded by position, not carried state, so a resumed run shuffles identically.
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self._step)
        updates, t0 = [], time.perf_counter()
        self._first_update_done = False
        for _ in range(self.algorithm.epochs):
            for mb in rollout.minibatches(self.algorithm.minibatches, generator):
                updates.append(reduce_metrics(self.update(mb), self.dist))
                release_host_memory()
                self._first_update_done = True
                self._updates += 1
        self._first_update_done = False
        with warnings.catch_warnings():  # a skipped first update: the schedule still follows the step
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()  # once per rollout: warm-up and decay count run steps
        self._step += 1
        line = {**rmetrics, **_combine_updates(updates), "optimizer_steps": self._updates}
        # Throughput of the whole rollout: its tokens over its collection and all of its updates.
        elapsed = (rmetrics["time/sample"] + rmetrics["time/prepare"] + rmetrics["time/score"]
                   + time.perf_counter() - t0)
        line["tokens_per_s"] = rmetrics["completion/tokens"] * self.dist.world_size / max(elapsed, 1e-9)
        line["memory/peak_rss_gb"] = peak_rss_gb()
        line["memory/children_rss_gb"] = children_rss_gb()  # worker processes, not in the peak above
        if self.device.type == "cuda":
            line["memory/peak_allocated_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self.logger.log_train(self._step, line)
        self.algorithm.on_step_end(line)
        self._watch_signal(line)
        every = cfg.logging.samples_every
        if every and (self._step == 1 or self._step % every == 0):
            self.logger.log_samples(self._step, rows)
        return line, obs

    def _check_applicable(self, rmetrics: dict[str, float]) -> None:
        """The run's first rollout had no sample that any weighted reward could score: stop."""
        if self._step != self._first_step or not any(r.weight != 0 for r in self.config.rewards):
            return  # later rollouts, or an env that computes its own reward (rewards: [])
        scored = rmetrics.get("rollout/batches", 1) * self.local_prompts * self.group_size
        if any_rank(rmetrics.get("reward/total/faults", 0) >= scored, self.dist):
            names = ", ".join(r.name for r in self.config.rewards if r.weight != 0)
            raise RftgymError(f"no sample of the first rollout had an applicable reward: every weighted reward "
                              f"({names}) returned None for all {int(scored)} samples; a reward that needs the gold "
                              f"answer cannot score data without one (env.kwargs.answer_column: null), so name "
                              f"the answer column or choose a reward that applies (see rftgym plugins)")

    def _check_stop_before_update(self) -> None:
        """The safe points before the rollout's first optimizer step (after collection, between
        micro-batches): a signal there drops the rollout and resumes from before it."""
        if self._first_update_done:
            return
        if any_rank(self._stop_signal is not None, self.dist):
            self.optimizer.zero_grad(set_to_none=True)
            raise _StopBeforeUpdate

    def _watch_signal(self, line: dict[str, float]) -> None:
        """Warn once when many steps in a row carried no learning signal (all advantages zero)."""
        if line.get("adv/max", 1.0) == 0.0 and line.get("adv/min", -1.0) == 0.0:
            self._stale_steps += 1
        else:
            self._stale_steps = 0
        if self._stale_steps == STALE_STEPS and self.dist.is_main:
            print(f"rftgym: warning: {STALE_STEPS} steps in a row with every advantage 0 (no learning signal): "
                  f"every completion of a group got the same reward. Likely causes: a reward that returns a "
                  f"constant (check reward/*/mean in metrics.jsonl), a task too easy or too hard for the model "
                  f"(rollout/accuracy 1 or 0), algo.group_size=1 with a group baseline, or too few "
                  f"rollout.max_new_tokens to write an answer", file=sys.stderr)

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
