"""GRPO (DeepSeekMath / R1) and its variants Dr. GRPO, DAPO and GSPO, as the seed writes it:

    Â_i = (R_i − mean(R)) / std(R)                                  same for every token of o_i
    J   = (1/G) Σ_i (1/|o_i|) Σ_t [ min(r_{i,t} Â_i, clip(r_{i,t}, 1−ε, 1+ε) Â_i) − β D_KL ]
    D_KL = π_ref/π_θ − log(π_ref/π_θ) − 1                           (k3, per token)

and the loss is −J. No value network; a frozen reference is needed only when β > 0. Â comes
from the estimator named by ``advantage`` (``algos/advantages.py``): RLOO is this loss with
the ``rloo`` estimator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..config import AlgoConfig, check
from . import advantages, core
from .base import Algorithm, check_groups, require, to_metrics, validate_choice
from .rollout import Rollout


@dataclass
class GRPOConfig(AlgoConfig):
    """GRPO hyper-parameters (defaults: the seed's GRPO, TRL's conventions)."""

    name: str = "grpo"
    group_size: int = 8
    """G: completions sampled per prompt (at least 2: the advantage compares them)."""
    beta: float = 0.0
    """β: coefficient of the per-token KL to the frozen reference (0: no reference is loaded)."""
    kl_kind: core.KLKind = "k3"
    """KL estimator; k3 = π_ref/π − log(π_ref/π) − 1 is the seed's (≥ 0, low variance)."""
    clip_low: float = 0.2
    """ε: the ratio is clipped below at 1 − ε."""
    clip_high: float | None = None
    """Upper clip 1 + clip_high; None = ``clip_low`` (DAPO's clip-higher: 0.28)."""
    dual_clip: float | None = None
    """c > 1 bounds a negative-advantage token's loss by −c·Â (dual-clip PPO); None = off."""
    loss_agg: core.AggMode = "seq-mean-token-mean"
    """How per-token losses become one number; the seed's 1/|o_i| then 1/G is ``seq-mean-token-mean``."""
    advantage: str = "grpo"
    """Advantage estimator by name (``rftgym plugins`` lists them): grpo, rloo, reinforce, or a plugin's."""
    scale_rewards: core.Scale = "group"
    """Divide the centred rewards by the group's std, the batch's std, or not at all (Dr. GRPO)."""
    adv_eps: float = 1e-4
    """Added to the std so that a near-constant group does not explode."""
    importance: Literal["token", "sequence"] = "token"
    """Importance ratio per token (GRPO) or per sequence, length-normalised (GSPO)."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal (no signal); the runner samples more to refill."""

    def validate(self) -> None:
        super().validate()
        check(self.group_size >= 2, "algo.group_size", self.group_size, "an integer >= 2 (GRPO compares completions)")
        check(self.beta >= 0, "algo.beta", self.beta, "a number >= 0")
        check(0 <= self.clip_low < 1, "algo.clip_low", self.clip_low, "a number in [0, 1)")
        check(self.clip_high is None or self.clip_high >= 0, "algo.clip_high", self.clip_high, "a number >= 0 or null")
        check(self.dual_clip is None or self.dual_clip > 1, "algo.dual_clip", self.dual_clip, "a number > 1 or null")
        check(self.adv_eps >= 0, "algo.adv_eps", self.adv_eps, "a number >= 0")
        validate_choice(self.loss_agg, "algo.loss_agg", core.AGG_MODES)
        validate_choice(self.kl_kind, "algo.kl_kind", core.KL_KINDS)
        validate_choice(self.scale_rewards, "algo.scale_rewards", core.SCALES)
        validate_choice(self.importance, "algo.importance", ("token", "sequence"))


class GRPO(Algorithm):
    """Group Relative Policy Optimization."""

    Config = GRPOConfig
    config: GRPOConfig

    @property
    def needs_reference(self) -> bool:
        return self.config.beta > 0

    @property
    def filters_groups(self) -> bool:
        return self.config.dynamic_sampling

    def select_groups(self, rollout: Rollout) -> Rollout:
        """DAPO's dynamic sampling: keep only groups whose rewards differ (Â ≠ 0 somewhere)."""
        if not self.config.dynamic_sampling:
            return rollout
        check_groups(rollout, self.group_size)
        r = rollout.rewards.view(-1, self.group_size)                             # [B, G]
        informative = (r != r[:, :1]).any(dim=1)                                  # [B]
        keep = informative.repeat_interleave(self.group_size).nonzero().squeeze(1)
        return rollout.select(keep)

    def advantages(self, rollout: Rollout) -> None:
        """Â_i from the configured estimator (GRPO's: (R_i − mean R_group) / (std + eps)),
        broadcast to every token of o_i."""
        check_groups(rollout, self.group_size)
        mask = rollout.completion_mask.to(rollout.old_logp.dtype)
        inputs = {"group_size": self.group_size, **vars(self.config)}
        rollout.advantages = advantages.estimate(self.estimator, rollout.rewards, mask, inputs)   # [N, T]

    def loss(self, mb: Rollout, logp: Tensor, entropy: Tensor | None = None,
             values: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        require(mb, "GRPO", "advantages", *(["ref_logp"] if c.beta > 0 else []))
        mask = mb.completion_mask.to(logp.dtype)
        norms = dict(num_tokens=mb.norm_tokens, num_seqs=mb.norm_seqs, max_len=mb.norm_len)

        # r_{i,t} = π_θ/π_old per token, or GSPO's s_i = exp(mean_t log r_{i,t}) per sequence
        if c.importance == "sequence":
            logp_is = core.sequence_logp(logp, mb.old_logp, mask)
        else:
            logp_is = logp
        # −min(r·Â, clip(r, 1−ε_low, 1+ε_high)·Â) per token
        surrogate = core.clipped_surrogate(logp_is, mb.old_logp, mb.advantages, c.clip_low, c.clip_high, c.dual_clip)
        policy_loss = core.aggregate(surrogate, mask, c.loss_agg, **norms)
        # + β·D_KL(π_θ ‖ π_ref) per token, averaged the same way
        if c.beta > 0:
            kl = core.kl_estimate(logp, mb.ref_logp, c.kl_kind)
            kl_loss = core.aggregate(kl, mask, c.loss_agg, **norms)
        else:
            kl = kl_loss = torch.zeros((), dtype=logp.dtype, device=logp.device)
        loss = policy_loss + c.beta * kl_loss

        with torch.no_grad():
            # loss terms as local means (per micro-batch) so that averaging over micro-batches works
            metrics = to_metrics(
                **{"loss/policy": core.aggregate(surrogate, mask, c.loss_agg),
                   "loss/kl": core.aggregate(kl, mask, c.loss_agg) if c.beta > 0 else kl_loss},
                kl=core.masked_mean(kl, mask) if c.beta > 0 else kl,
                clip_fraction=core.clip_fraction(logp_is, mb.old_logp, mb.advantages, mask, c.clip_low, c.clip_high),
                approx_kl=core.masked_mean(core.kl_estimate(mb.old_logp, logp, "k3"), mask),  # KL(π_old ‖ π_θ)
                ratio=core.masked_mean(torch.exp(logp_is - mb.old_logp), mask),
            )
        return loss, metrics


# ---------------------------------------------------------------------------------------------
# Presets: the same algorithm with the variant's defaults (every field stays overridable)
# ---------------------------------------------------------------------------------------------

@dataclass
class DrGRPOConfig(GRPOConfig):
    """Dr. GRPO (Liu et al., 2025): no std scaling, no 1/|o_i| length bias."""

    name: str = "dr_grpo"
    scale_rewards: core.Scale = "none"
    loss_agg: core.AggMode = "seq-mean-token-sum-norm"


class DrGRPO(GRPO):
    """GRPO Done Right: Â_i = R_i − mean(R), each sequence's token sum divided by a constant length."""

    Config = DrGRPOConfig


@dataclass
class DAPOConfig(GRPOConfig):
    """DAPO (Yu et al., 2025): clip-higher, token-level loss, dynamic sampling, no KL.

    Overlong reward shaping is a reward, not a loss: add the length reward to ``rewards``.
    """

    name: str = "dapo"
    clip_high: float | None = 0.28
    loss_agg: core.AggMode = "token-mean"
    dynamic_sampling: bool = True
    beta: float = 0.0


class DAPO(GRPO):
    """Decoupled clip and dynamic sampling policy optimization."""

    Config = DAPOConfig


@dataclass
class GSPOConfig(GRPOConfig):
    """GSPO (Zheng et al., 2025): sequence-level, length-normalised ratio with the paper's tiny clip range."""

    name: str = "gspo"
    importance: Literal["token", "sequence"] = "sequence"
    clip_low: float = 3e-4
    clip_high: float | None = 4e-4


class GSPO(GRPO):
    """Group Sequence Policy Optimization."""

    Config = GSPOConfig


@dataclass
class RLOOConfig(GRPOConfig):
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024): GRPO's clipped loss with the leave-one-out
    advantage A_i = R_i − (1/(G−1)) Σ_{j≠i} R_j."""

    name: str = "rloo"
    group_size: int = 4
    advantage: str = "rloo"


class RLOO(GRPO):
    """REINFORCE Leave-One-Out, PPO-clipped for reuse of the rollout."""

    Config = RLOOConfig
