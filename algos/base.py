"""The contract between an algorithm and the runner (see docs/internals.md, "Algorithms").

The runner drives any algorithm through this interface and never branches on its name:

    algo = get_algorithm(name)(config)
    rollout = algo.select_groups(rollout)            # dynamic sampling may drop groups (runner refills)
    algo.advantages(rollout)                         # fills rollout.advantages (+ returns for a critic)
    for epoch in range(algo.epochs):
        for mb in rollout.minibatches(algo.minibatches, generator):
            loss, metrics = algo.loss(mb, logp, entropy, values)
    algo.on_step_end(step_metrics)                   # e.g. the adaptive KL controller
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import Tensor

from ..config import AlgoConfig, ConfigError, from_dict, to_dict
from .rollout import Rollout


def to_metrics(**values: Tensor | float) -> dict[str, float]:
    """Detached scalars as plain floats, with one device sync for the whole dict."""
    if not values:
        return {}
    device = next((v.device for v in values.values() if isinstance(v, Tensor)), torch.device("cpu"))
    stacked = torch.stack([torch.as_tensor(v, device=device).detach().float().reshape(()) for v in values.values()])
    return dict(zip(values, stacked.tolist()))


class Algorithm:
    """Base of every algorithm: a config dataclass, advantages and a loss.

    Subclasses set ``Config`` (a dataclass subclassing :class:`rftgym.config.AlgoConfig`) and
    ``needs_critic``, and implement :meth:`advantages` and :meth:`loss`.
    """

    Config: ClassVar[type[AlgoConfig]] = AlgoConfig
    needs_critic: ClassVar[bool] = False

    estimator_inputs: ClassVar[tuple[str, ...]] = ()
    """Tensors beyond rewards and mask that this algorithm hands its estimator (PPO: values)."""

    def __init__(self, config: AlgoConfig | Mapping[str, Any] | None = None, *,
                 estimator: Callable[..., Tensor] | None = None) -> None:
        if config is None:
            config = self.Config()
        elif isinstance(config, Mapping):
            config = from_dict(self.Config, dict(config), "algo")
        elif not isinstance(config, self.Config):
            # e.g. a GRPOConfig handed to the DAPO preset: same fields, this class's defaults lose
            config = from_dict(self.Config, to_dict(config), "algo")
        config.validate()
        self.config = config
        # Configs with an ``advantage`` field name their estimator; resolved once, here (a
        # composition root may hand the resolved function in instead).
        self.estimator: Callable[..., Tensor] | None = estimator
        name = getattr(config, "advantage", None)
        if name is not None:
            from . import advantages

            if self.estimator is None:
                self.estimator = advantages.resolve(name)
            provided = {"group_size", *self.estimator_inputs, *to_dict(config)}
            advantages.check_inputs(self.estimator, name, provided, config.name)

    # -- what the runner asks ---------------------------------------------------------------
    @property
    def group_size(self) -> int:
        """G: completions sampled per prompt."""
        return self.config.group_size

    @property
    def epochs(self) -> int:
        """μ: passes over each rollout."""
        return self.config.epochs

    @property
    def minibatches(self) -> int:
        """Optimizer steps per epoch."""
        return self.config.minibatches

    @property
    def needs_reference(self) -> bool:
        """Whether the runner must load a frozen reference and fill ``rollout.ref_logp``."""
        return False

    @property
    def filters_groups(self) -> bool:
        """Whether :meth:`select_groups` may drop groups. The runner then runs the reference and
        critic forwards on the kept rollout only, instead of on each batch while it is scored."""
        return False

    # -- the algorithm ----------------------------------------------------------------------
    def select_groups(self, rollout: Rollout) -> Rollout:
        """Groups to train on (dynamic sampling drops some; the runner refills). Default: all."""
        return rollout

    def advantages(self, rollout: Rollout) -> None:
        """Fill ``rollout.advantages`` [N, T] (and ``rollout.returns`` for a critic), in place."""
        raise NotImplementedError(f"{type(self).__name__} must implement advantages()")

    def loss(self, mb: Rollout, logp: Tensor, entropy: Tensor | None = None,
             values: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss of a (micro-)batch and its metrics.

        logp: [n, T] log-probs of ``mb.completion_ids`` under the current policy (with gradient);
        entropy: [n, T] optional (for an entropy bonus; the runner logs entropy itself);
        values: [n, T] the critic's, with gradient. Metrics named ``loss/<term>`` are the terms
        of the loss, as local means of the micro-batch.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a resume (e.g. the adaptive KL coefficient)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def rollout_metrics(self) -> dict[str, float]:
        """Metrics of the whole rollout measured in :meth:`advantages` (the runner averages them
        over ranks, logs them and passes them back to :meth:`on_step_end`)."""
        return {}

    def on_step_end(self, metrics: Mapping[str, float]) -> None:
        """Called once per training step (after all epochs/minibatches) with its metrics."""


def require(mb: Rollout, algo: str, *names: str) -> None:
    """Fail clearly when the runner did not fill a rollout field the algorithm needs."""
    missing = [n for n in names if getattr(mb, n) is None]
    if missing:
        raise ValueError(f"{algo} needs rollout.{', rollout.'.join(missing)}; the runner did not provide it"
                         + (" (call advantages() first)" if "advantages" in missing else ""))


def validate_choice(value: Any, key: str, accepted: tuple[str, ...]) -> None:
    """ConfigError naming ``key`` and the accepted values unless ``value`` is one of them."""
    if value not in accepted:
        raise ConfigError(f"config key {key!r} = {value!r} is invalid; expected one of "
                          f"{', '.join(map(repr, accepted))}")


def check_groups(mb: Rollout, group_size: int) -> None:
    """Group-relative advantages need the G completions of each prompt contiguous."""
    ids = mb.group_ids
    if len(mb) % group_size or not bool((ids.view(-1, group_size) == ids.view(-1, group_size)[:, :1]).all()):
        raise ValueError(f"rollout of {len(mb)} sequences is not contiguous groups of {group_size} "
                         f"(group_ids {ids.tolist()[:2 * group_size]}...)")
