"""REINFORCE, the seed's starting point: ∇J = E[ Ψ ∇ log π_θ(o | q) ] with Ψ = R − b.

    A_i = R_i − b,   b = mean reward of the batch, of the prompt's group, or 0
    L   = −agg_t A_i · log π_θ(o_{i,t} | q, o_{i,<t})

log π(o|q) = Σ_t log π(o_t|…), so the default ``seq-mean-token-sum`` is the exact policy gradient.
The baseline is the ``reinforce`` advantage estimator (``algos/advantages.py``); any other can be
named with ``advantage``.
On-policy: one pass over each rollout (at ratio 1 the clipped PPO loss has this same gradient).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ..config import AlgoConfig, check
from . import advantages, core
from .base import Algorithm, check_groups, require, to_metrics, validate_choice
from .rollout import Rollout


@dataclass
class REINFORCEConfig(AlgoConfig):
    """REINFORCE hyper-parameters."""

    name: str = "reinforce"
    group_size: int = 1
    """Completions per prompt (the ``group`` baseline needs at least 2)."""
    advantage: str = "reinforce"
    """Advantage estimator by name (``rftgym plugins`` lists them); ``reinforce`` is R − b."""
    baseline: Literal["batch", "group", "none"] = "batch"
    """b: the batch's mean reward, the prompt's group mean, or none (high variance)."""
    loss_agg: core.AggMode = "seq-mean-token-sum"
    """``seq-mean-token-sum`` weights each sequence's whole log-likelihood (the textbook estimator)."""

    def validate(self) -> None:
        super().validate()
        check(self.epochs == 1, "algo.epochs", self.epochs, "1 (REINFORCE is on-policy; use grpo/ppo/rloo for μ > 1)")
        check(self.minibatches == 1, "algo.minibatches", self.minibatches,
              "1 (REINFORCE is on-policy: a second minibatch would be off-policy without a ratio)")
        validate_choice(self.baseline, "algo.baseline", ("batch", "group", "none"))
        check(self.baseline != "group" or self.group_size >= 2, "algo.group_size", self.group_size,
              "an integer >= 2 with baseline 'group'")
        validate_choice(self.loss_agg, "algo.loss_agg", core.AGG_MODES)


class REINFORCE(Algorithm):
    """Vanilla policy gradient with a baseline."""

    Config = REINFORCEConfig
    config: REINFORCEConfig

    def advantages(self, rollout: Rollout) -> None:
        """Ψ_i = R_i − b from the configured estimator, broadcast to every token of o_i."""
        check_groups(rollout, self.group_size)
        mask = rollout.completion_mask.to(rollout.old_logp.dtype)
        inputs = {"group_size": self.group_size, **vars(self.config)}
        rollout.advantages = advantages.estimate(self.estimator, rollout.rewards, mask, inputs)   # [N, T]

    def loss(self, mb: Rollout, logp: Tensor, entropy: Tensor | None = None,
             values: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        require(mb, "REINFORCE", "advantages")
        mask = mb.completion_mask.to(logp.dtype)
        per_token = -mb.advantages * logp                                          # −A·log π
        loss = core.aggregate(per_token, mask, self.config.loss_agg, num_tokens=mb.norm_tokens,
                              num_seqs=mb.norm_seqs, max_len=mb.norm_len)
        local = core.aggregate(per_token.detach(), mask, self.config.loss_agg)   # local mean, see grpo.py
        return loss, to_metrics(**{"loss/policy": local}, logp_mean=core.masked_mean(logp.detach(), mask))
