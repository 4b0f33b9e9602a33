"""The trainer's checkpoints: save the resumable state of a step, and restore it."""
from __future__ import annotations

import json
from typing import Any

from ..envs.formatting import from_plain, to_plain
from . import checkpoint as ckpt
from .distributed import barrier
from .parallel import load_full_checkpoint, save_full_checkpoint
from .run_log import METRICS, SAMPLES, truncate_jsonl


class Checkpoints:
    """Part of :class:`rftgym.runner.trainer.Trainer`: model, optimizer, scheduler, algorithm,
    env position, reward state and the loop's counters (bit-exact resume)."""

    def _resume_point(self, obs) -> dict[str, Any]:
        """What this rank needs to continue from here: RNG states, env position, the pending
        observations and the rewards' state (taken before a rollout, it lets a stop drop it)."""
        env_state = self.env.state_dict() if hasattr(self.env, "state_dict") else {}
        return {"rng": ckpt.rng_snapshot(), "env": json.dumps(env_state), "obs": [to_plain(o) for o in obs],
                "rewards": json.dumps(self.envs.pipeline.state_dict())}

    def save_checkpoint(self, step: int, point: dict[str, Any]) -> None:
        """Write ``checkpoints/step-N`` (atomic) from the weights now and the rank's ``point``."""
        path = ckpt.tmp_dir(self.output_dir, step)
        if self.dist.is_main:
            ckpt.prepare_tmp(self.output_dir, step)
        barrier(self.dist)
        ckpt.write_rank_state(path, self.dist.rank, point)
        barrier(self.dist)
        state = {"algorithm": self.algorithm.state_dict(), "evaluated_step": self._evaluated_step,
                 "world_size": self.dist.world_size, "nonfinite": self._nonfinite,
                 "optimizer_steps": self._updates}
        if self.fsdp:  # gathering the shards is a collective; rank 0 writes
            save_full_checkpoint(path, step, self.model, self.optimizer, self.scheduler, state, self.dist, self.critic)
        if self.dist.is_main:
            if not self.fsdp:
                ckpt.write_main_state(path, step, self.model, self.optimizer, self.scheduler, state, self.critic)
            ckpt.commit(self.output_dir, step, self.config.keep_checkpoints)
        barrier(self.dist)

    def _restore(self) -> Any:
        if self.fsdp:
            state, extras = load_full_checkpoint(self.resume_from, self.dist.rank, self.model, self.optimizer,
                                                 self.scheduler, self.dist, self.critic)
        else:
            state, extras = ckpt.load(self.resume_from, self.dist.rank, self.model, self.optimizer, self.scheduler,
                                      self.critic)
        self.algorithm.load_state_dict(state.get("algorithm", {}))
        self._evaluated_step = state.get("evaluated_step", -1)
        self._nonfinite = state.get("nonfinite", 0)
        self._updates = int(state.get("optimizer_steps", state["step"]))
        self.envs.pipeline.load_state_dict(json.loads(extras.get("rewards", "{}")))
        if hasattr(self.env, "load_state_dict"):
            self.env.load_state_dict(json.loads(extras["env"]))
        step = int(state["step"])
        if self.dist.is_main:
            truncate_jsonl(self.output_dir / METRICS, step)
            truncate_jsonl(self.output_dir / SAMPLES, step)
        return step, tuple(from_plain(o) for o in extras["obs"])  # conversations come back with their turns

