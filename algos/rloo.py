"""RLOO, REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024):

    A_i = R_i − (1/(G−1)) Σ_{j≠i} R_j                  baseline = the other completions' mean
    L   = −agg_t min(r_{i,t} A_i, clip(r_{i,t}, 1−ε, 1+ε) A_i)  [+ β·KL_t]

The leave-one-out baseline does not depend on R_i, so the estimator stays unbiased; with
μ = 1 the ratio is 1 and the loss's gradient is plain REINFORCE with that baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..config import AlgoConfig, check
from . import core
from .base import Algorithm, check_groups, require, to_metrics, validate_choice
from .rollout import Rollout


def leave_one_out_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """A_i = R_i − mean_{j≠i} R_j within each group. rewards: [N] (groups contiguous) → [N]."""
    r = rewards.view(-1, group_size)                                            # [B, G]
    baseline = (r.sum(dim=1, keepdim=True) - r) / (group_size - 1)              # [B, G]
    return (r - baseline).view(-1)


@dataclass
class RLOOConfig(AlgoConfig):
    """RLOO hyper-parameters."""

    name: str = "rloo"
    group_size: int = 4
    """G: completions per prompt (at least 2, for the leave-one-out baseline)."""
    clip_low: float = 0.2
    """ε of the ratio clip (only active when μ > 1 or with several minibatches)."""
    clip_high: float | None = None
    """None = ``clip_low``."""
    beta: float = 0.0
    """Coefficient of the per-token KL to the frozen reference in the loss (0: no reference)."""
    kl_kind: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator for the β term (k3 is unbiased and always ≥ 0)."""
    loss_agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"] = \
        "seq-mean-token-mean"
    """How per-token losses become one number (see ``core.aggregate``)."""

    def validate(self) -> None:
        super().validate()
        check(self.group_size >= 2, "algo.group_size", self.group_size, "an integer >= 2 (leave-one-out)")
        check(0 <= self.clip_low < 1, "algo.clip_low", self.clip_low, "a number in [0, 1)")
        check(self.clip_high is None or self.clip_high >= 0, "algo.clip_high", self.clip_high, "a number >= 0 or null")
        check(self.beta >= 0, "algo.beta", self.beta, "a number >= 0")
        validate_choice(self.loss_agg, "algo.loss_agg", core.AGG_MODES)
        validate_choice(self.kl_kind, "algo.kl_kind", core.KL_KINDS)


class RLOO(Algorithm):
    """REINFORCE with a leave-one-out baseline, PPO-clipped for reuse of the rollout."""

    Config = RLOOConfig
    config: RLOOConfig

    @property
    def needs_reference(self) -> bool:
        return self.config.beta > 0

    def advantages(self, rollout: Rollout) -> None:
        check_groups(rollout, self.group_size)
        adv = leave_one_out_advantages(rollout.rewards, self.group_size)            # [N]
        mask = rollout.completion_mask.to(rollout.old_logp.dtype)
        rollout.advantages = adv.to(mask)[:, None] * mask                           # [N, T]

    def loss(self, mb: Rollout, logp: Tensor, entropy: Tensor | None = None,
             values: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        require(mb, "RLOO", "advantages", *(["ref_logp"] if c.beta > 0 else []))
        mask = mb.completion_mask.to(logp.dtype)
        norms = dict(num_tokens=mb.norm_tokens, num_seqs=mb.norm_seqs, max_len=mb.norm_len)
        surrogate = core.clipped_surrogate(logp, mb.old_logp, mb.advantages, c.clip_low, c.clip_high)
        policy_loss = core.aggregate(surrogate, mask, c.loss_agg, **norms)
        if c.beta > 0:
            kl = core.kl_estimate(logp, mb.ref_logp, c.kl_kind)
            kl_loss = core.aggregate(kl, mask, c.loss_agg, **norms)
        else:
            kl = kl_loss = torch.zeros((), dtype=logp.dtype, device=logp.device)
        loss = policy_loss + c.beta * kl_loss
        with torch.no_grad():
            extra = {} if entropy is None else {"entropy": core.masked_mean(entropy, mask)}
            metrics = to_metrics(
                **{"loss/policy": core.aggregate(surrogate, mask, c.loss_agg),   # local means, see grpo.py
                   "loss/kl": core.aggregate(kl, mask, c.loss_agg) if c.beta > 0 else kl_loss},
                clip_fraction=core.clip_fraction(logp, mb.old_logp, mb.advantages, mask, c.clip_low, c.clip_high),
                approx_kl=core.masked_mean(core.kl_estimate(mb.old_logp, logp, "k3"), mask),
                **extra,
            )
        return loss, metrics
