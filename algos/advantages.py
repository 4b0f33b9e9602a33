"""Advantage estimators by name (as verl registers them), beside the policy losses.

An estimator is a pure function on tensors::

    estimator(rewards [N], mask [N, T], *, group_size, [values [N, T]], [token_rewards [N, T]],
              [turn_rewards [N, T] (multi-turn, else None)],
              [option=default, ...]) -> advantages [N] (one per sequence) or [N, T] (per token)

Its keyword options are the algorithm config keys of the same name (``scale_rewards``,
``adv_eps``, ``baseline``, ``gamma``, ``lam``): :func:`estimate` passes each parameter the
function names, so ``algo.advantage: rloo`` under ``--algo grpo`` just works, and an estimator
that needs a critic's ``values`` is refused by an algorithm without one. Plugins add estimators
with the ``rftgym_register_advantages`` hook or ``rftgym.register_advantage``.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from torch import Tensor

from ..config import ConfigError
from . import core

Estimator = Callable[..., Tensor]


# ---------------------------------------------------------------------------------------------
# The shipped estimators
# ---------------------------------------------------------------------------------------------

def grpo(rewards: Tensor, mask: Tensor, *, group_size: int, scale_rewards: str = "group",
         adv_eps: float = 1e-4) -> Tensor:
    """GRPO: Â_i = (R_i − mean R_group) / (std + eps); ``scale_rewards: none`` is Dr. GRPO's. → [N]"""
    return core.group_advantages(rewards, group_size, scale_rewards, adv_eps)


def rloo(rewards: Tensor, mask: Tensor, *, group_size: int) -> Tensor:
    """RLOO: A_i = R_i − mean_{j≠i} R_j (leave-one-out baseline). → [N]"""
    return core.leave_one_out_advantages(rewards, group_size)


def reinforce(rewards: Tensor, mask: Tensor, *, group_size: int, baseline: str = "batch") -> Tensor:
    """REINFORCE's Ψ = R − b, b the batch's mean reward, the prompt's group mean, or 0. → [N]"""
    if baseline == "group":
        return core.group_advantages(rewards, group_size, scale="none")        # R_i − mean(group)
    if baseline == "batch":
        return rewards - rewards.mean()
    if baseline == "none":
        return rewards
    raise ValueError(f"unknown baseline {baseline!r}; expected 'batch', 'group' or 'none'")


def gae(rewards: Tensor, mask: Tensor, *, values: Tensor, token_rewards: Tensor | None = None,
        turn_rewards: Tensor | None = None, gamma: float = 1.0, lam: float = 0.95) -> Tensor:
    """PPO's GAE: r_t = token_rewards_t (+ R at the last token), A_t = Σ_l (γλ)^l δ_{t+l}. → [N, T]

    ``token_rewards`` is the per-token shaping (PPO's −β·KL_t); the critic's target is A + V.
    ``turn_rewards`` (multi-turn episodes): each turn's reward at its last policy token, used
    instead of R at the last token; GAE chains the policy tokens (``mask``) over the env's.
    """
    r_t = core.last_token_rewards(rewards, mask) if turn_rewards is None else turn_rewards.to(mask)  # [N, T]
    if token_rewards is not None:
        r_t = token_rewards + r_t
    advantages, _ = core.gae(r_t, values, mask, gamma, lam)
    return advantages


# ---------------------------------------------------------------------------------------------
# Resolving a name and calling an estimator
# ---------------------------------------------------------------------------------------------

def resolve(name: str) -> Estimator:
    """The estimator registered as ``name`` (an unknown name fails with the closest match)."""
    from ..errors import UnknownNameError
    from ..plugins.manager import get_manager

    manager = get_manager()
    try:
        return manager.lookup(manager.advantages, name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"config key 'algo.advantage': {exc}") from None


def _parameters(fn: Estimator) -> tuple[list[str], set[str], bool]:
    """(every keyword it takes, the required ones, whether it takes **kwargs)."""
    params = list(inspect.signature(fn).parameters.values())[2:]               # after rewards, mask
    names = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = {p.name for p in params if p.default is p.empty
                and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names, required, any(p.kind is p.VAR_KEYWORD for p in params)


def check_inputs(fn: Estimator, name: str, available: set[str], algo: str) -> None:
    """ConfigError now (before any model loads) if ``fn`` needs an input ``algo`` never provides."""
    _, required, _ = _parameters(fn)
    missing = sorted(required - available)
    if missing:
        raise ConfigError(f"config key 'algo.advantage' = {name!r}: the estimator needs "
                          f"{', '.join(missing)}, which algorithm {algo!r} does not provide")


def estimate(fn: Estimator, rewards: Tensor, mask: Tensor, inputs: Mapping[str, Any]) -> Tensor:
    """Call ``fn`` with the ``inputs`` (tensors and config options) its signature names, and
    broadcast a per-sequence result over the tokens: → advantages [N, T], 0 on padding."""
    names, _, takes_any = _parameters(fn)
    kwargs = dict(inputs) if takes_any else {k: inputs[k] for k in names if k in inputs}
    adv = fn(rewards, mask, **kwargs)
    if adv.dim() == 1:
        return adv.to(mask)[:, None] * mask                                    # [N] → [N, T]
    return adv.to(mask) * mask
