"""PPO for language models (Ziegler et al. 2019, Ouyang et al. 2022; TRL/verl conventions):

    r_t     = −β·KL_t  (+ R at the last completion token)          per-token reward
    δ_t     = r_t + γ V(s_{t+1}) − V(s_t)                            TD error
    A_t     = Σ_l (γλ)^l δ_{t+l},   returns_t = A_t + V(s_t)         GAE, then A whitened
    L       = −(1/|o|) Σ_t min(ρ_t A_t, clip(ρ_t, 1−ε, 1+ε) A_t)     ρ_t = π_θ/π_old
              + c_v · ½ max((V − R)², (clip(V, V_old ± ε_v) − R)²)

with β fixed or adapted towards a target KL (Ziegler et al.'s proportional controller). A comes
from the estimator named by ``advantage`` (``gae``, ``algos/advantages.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

from ..config import AlgoConfig, check
from . import advantages, core
from .base import Algorithm, require, to_metrics, validate_choice
from .rollout import Rollout


@dataclass
class PPOConfig(AlgoConfig):
    """PPO hyper-parameters (defaults follow TRL's PPOTrainer)."""

    name: str = "ppo"
    group_size: int = 1
    """Completions per prompt (1: the critic is the baseline)."""
    epochs: int = 4
    """μ: passes over each rollout (TRL: 4)."""
    minibatches: int = 2
    """Shuffled minibatches per epoch, one optimizer step each."""
    advantage: str = "gae"
    """Advantage estimator by name (``rftgym plugins`` lists them); ``gae`` uses the critic."""
    gamma: float = 1.0
    """γ: discount over completion tokens (1: the bandit's single reward is not discounted)."""
    lam: float = 0.95
    """λ of GAE (0: one-step TD, 1: Monte Carlo)."""
    clip_low: float = 0.2
    """ε: the ratio is clipped to [1 − ε, 1 + clip_high]."""
    clip_high: float | None = None
    """None = ``clip_low``."""
    dual_clip: float | None = None
    """c > 1 bounds a negative-advantage token's loss by −c·A (dual-clip PPO); None = off."""
    loss_agg: core.AggMode = "seq-mean-token-mean"
    """Policy-loss averaging; the seed's per-token PPO is (1/|o|) Σ_t, i.e. ``seq-mean-token-mean``."""
    vf_coef: float = 0.1
    """c_v: weight of the value loss."""
    value_clip: float | None = 0.2
    """ε_v: new values stay within V_old ± ε_v in the clipped value loss; None = unclipped."""
    kl_coef: float = 0.05
    """β: KL penalty folded into the per-token rewards (0: no reference is loaded)."""
    kl_kind: core.KLKind = "k1"
    """Per-token KL estimator of the penalty (k1 = log π_old/π_ref, as TRL and Ziegler et al.)."""
    adaptive_kl: bool = False
    """Adapt β so that the measured KL follows ``kl_target``."""
    kl_target: float = 6.0
    """Target KL per sequence (nats) of the adaptive controller (Ziegler et al.: 6)."""
    kl_horizon: float = 10000.0
    """Horizon (in sequences) of the adaptive controller (Ziegler et al.: 10000)."""
    whiten_advantages: bool = True
    """Normalise the advantages to zero mean and unit variance over the rollout's tokens."""

    def validate(self) -> None:
        super().validate()
        check(0 <= self.gamma <= 1, "algo.gamma", self.gamma, "a number in [0, 1]")
        check(0 <= self.lam <= 1, "algo.lam", self.lam, "a number in [0, 1]")
        check(0 <= self.clip_low < 1, "algo.clip_low", self.clip_low, "a number in [0, 1)")
        check(self.clip_high is None or self.clip_high >= 0, "algo.clip_high", self.clip_high, "a number >= 0 or null")
        check(self.dual_clip is None or self.dual_clip > 1, "algo.dual_clip", self.dual_clip, "a number > 1 or null")
        check(self.vf_coef >= 0, "algo.vf_coef", self.vf_coef, "a number >= 0")
        check(self.value_clip is None or self.value_clip >= 0, "algo.value_clip", self.value_clip,
              "a number >= 0 or null")
        check(self.kl_coef >= 0, "algo.kl_coef", self.kl_coef, "a number >= 0")
        check(self.kl_target > 0, "algo.kl_target", self.kl_target, "a number > 0")
        check(self.kl_horizon > 0, "algo.kl_horizon", self.kl_horizon, "a number > 0")
        check(not (self.adaptive_kl and self.kl_coef == 0), "algo.adaptive_kl", self.adaptive_kl,
              "false when algo.kl_coef is 0 (a zero β cannot adapt)")
        validate_choice(self.loss_agg, "algo.loss_agg", core.AGG_MODES)
        validate_choice(self.kl_kind, "algo.kl_kind", core.KL_KINDS)


class AdaptiveKL:
    """Ziegler et al.'s controller: e = clip(KL/target − 1, ±0.2); β ← β·(1 + e·n/horizon)."""

    def __init__(self, beta: float, target: float, horizon: float) -> None:
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl: float, n_seqs: int) -> None:
        error = min(max(kl / self.target - 1, -0.2), 0.2)
        self.beta *= 1 + error * n_seqs / self.horizon


class PPO(Algorithm):
    """Proximal Policy Optimization with a learned critic."""

    Config = PPOConfig
    config: PPOConfig
    needs_critic = True
    estimator_inputs = ("values", "token_rewards")

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        c = self.config
        self.kl_ctl = AdaptiveKL(c.kl_coef, c.kl_target, c.kl_horizon)
        self._rollout_kl: float | None = None   # mean per-sequence KL of the last rollout (local)
        self._rollout_seqs = 0

    @property
    def needs_reference(self) -> bool:
        return self.config.kl_coef > 0

    @property
    def kl_coef(self) -> float:
        """The current β (changes over training when ``adaptive_kl``)."""
        return self.kl_ctl.beta

    def advantages(self, rollout: Rollout) -> None:
        """Per-token rewards → GAE → whitening; fills ``advantages`` and ``returns``."""
        c = self.config
        require(rollout, "PPO", "values", *(["ref_logp"] if c.kl_coef > 0 else []))
        mask = rollout.completion_mask.to(rollout.old_logp.dtype)                   # [N, T]
        values = rollout.values.to(mask.dtype) * mask

        # r_t = −β·KL_t per token (the estimator adds the sequence reward R at the last token)
        if c.kl_coef > 0:
            kl = core.kl_estimate(rollout.old_logp, rollout.ref_logp, c.kl_kind) * mask
        else:
            kl = torch.zeros_like(mask)
        inputs = {"group_size": self.group_size, **vars(c), "values": values, "token_rewards": -self.kl_coef * kl,
                  "turn_rewards": rollout.turn_rewards}

        # GAE: δ_t = r_t + γV(s_{t+1}) − V(s_t), A_t = Σ (γλ)^l δ_{t+l}; returns = A + V
        adv = advantages.estimate(self.estimator, rollout.rewards, mask, inputs)
        returns = (adv + values) * mask
        if c.whiten_advantages:
            adv = core.masked_whiten(adv, mask)
        rollout.advantages, rollout.returns = adv, returns
        self._rollout_kl = float(kl.sum(dim=1).mean())
        self._rollout_seqs = len(rollout)

    def loss(self, mb: Rollout, logp: Tensor, entropy: Tensor | None = None,
             values: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        require(mb, "PPO", "advantages", "returns", "values")
        if values is None:
            raise ValueError("PPO.loss needs the critic's values (needs_critic is True)")
        mask = mb.completion_mask.to(logp.dtype)

        # −min(ρ·A, clip(ρ, 1−ε, 1+ε)·A), averaged as the seed does
        surrogate = core.clipped_surrogate(logp, mb.old_logp, mb.advantages, c.clip_low, c.clip_high, c.dual_clip)
        policy_loss = core.aggregate(surrogate, mask, c.loss_agg, num_tokens=mb.norm_tokens, num_seqs=mb.norm_seqs,
                                     max_len=mb.norm_len)
        # + c_v · ½ max((V − R)², (clip(V, V_old ± ε_v) − R)²)
        vf_loss = core.value_loss(values, mb.values.to(values), mb.returns, mask, c.value_clip, num_tokens=mb.norm_tokens)
        loss = policy_loss + c.vf_coef * vf_loss

        with torch.no_grad():
            extra = {}
            if mb.ref_logp is not None:   # KL(π_old ‖ π_ref) per sequence, what the adaptive β tracks
                extra["kl_ref"] = (core.kl_estimate(mb.old_logp, mb.ref_logp, c.kl_kind) * mask).sum(1).mean()
            vf_clipped = (values - mb.values).abs() > c.value_clip if c.value_clip is not None else torch.zeros_like(mask)
            metrics = to_metrics(
                # loss terms as local means (per micro-batch) so that averaging over micro-batches works
                **{"loss/policy": core.aggregate(surrogate, mask, c.loss_agg),
                   "loss/value": core.value_loss(values, mb.values.to(values), mb.returns, mask, c.value_clip)},
                approx_kl=core.masked_mean(core.kl_estimate(mb.old_logp, logp, "k3"), mask),  # KL(π_old ‖ π_θ)
                clip_fraction=core.clip_fraction(logp, mb.old_logp, mb.advantages, mask, c.clip_low, c.clip_high),
                value_clip_fraction=core.masked_mean(vf_clipped.to(mask.dtype), mask),
                value_mean=core.masked_mean(values, mask),
                value_target_mean=core.masked_mean(mb.returns, mask),
                kl_coef=self.kl_coef,
                **extra,
            )
        return loss, metrics

    def rollout_metrics(self) -> dict[str, float]:
        return {} if self._rollout_kl is None else {"kl_ref_rollout": self._rollout_kl}

    def on_step_end(self, metrics: Mapping[str, float]) -> None:
        """Adapt β from the whole rollout's KL to the reference, averaged over ranks by the runner
        (``kl_ref_rollout``), stepping the controller by the global number of sequences."""
        if not self.config.adaptive_kl:
            return
        kl = metrics.get("kl_ref_rollout", self._rollout_kl)
        n = int(metrics.get("rollout/sequences", self._rollout_seqs))
        if kl is not None and n:
            self.kl_ctl.update(float(kl), n)

    def state_dict(self) -> dict[str, Any]:
        return {"kl_coef": self.kl_ctl.beta}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.kl_ctl.beta = float(state.get("kl_coef", self.config.kl_coef))
