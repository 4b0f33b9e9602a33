"""The composition root: every name of a run becomes an object here, once.

``rftgym train``, ``rftgym.train``, ``rftgym eval`` and ``rftgym train-rm`` come through this
module. It loads plugins, resolves the algorithm (and its config class), the rewards and the
env id, and builds the parts the trainer and the evaluator take: the reward pipeline (and a
frozen view of it for evaluation), the envs, and the models. Below it nothing looks a name up
by going back up: the leaves (``envs/``, ``algos/``, ``rewards/``) receive objects.

Unknown names fail in :func:`resolve_config` (and so under ``--dry-run``), before any model
loads, with the closest registered name.
"""
from __future__ import annotations

import copy
import inspect
import os
from dataclasses import dataclass
from typing import Any, Iterable

from ..config import AlgoConfig, RewardConfig, RunConfig, algo_config_from_dict, build_config, from_dict, to_dict
from ..errors import ConfigError, RftgymError
from ..envs.registry import ensure_env, make_vec
from ..plugins.manager import get_manager
from ..rewards.base import Reward, reward_by_name
from ..rewards.pipeline import RewardPipeline


def load_plugins(specs: Iterable[str] = (), *, strict: bool | None = None) -> None:
    """Built-ins, the ``rftgym`` entry points (honouring ``RFTGYM_LOAD_PLUGINS``) and the
    explicit ``specs`` (module names or ``.py`` paths). Idempotent."""
    manager = get_manager()
    manager.load_entry_points(strict=strict)
    for spec in specs:
        manager.load_plugin(spec)


def algorithm_class(name: str) -> type:
    """The algorithm registered as ``name`` (an unknown name lists the closest)."""
    manager = get_manager()
    return manager.lookup(manager.algorithms, name)


class RootNames:
    """The :class:`rftgym.config.NameResolver` of the house: names go to the plugin registry."""

    def load_plugins(self, specs: list[str]) -> None:
        """Load the plugins a config lists."""
        load_plugins(specs)

    def algo_config(self, name: str) -> type:
        """``Algorithm.Config`` of ``name`` (the bare AlgoConfig when the class names none)."""
        return getattr(algorithm_class(name), "Config", AlgoConfig)

    def check_names(self, config: RunConfig) -> None:
        """Reward names and options, the env id and its arguments, data files, the model
        directory and the advantage estimator; builds nothing heavy."""
        from . import checks

        rewards = resolve_rewards(config)
        checks.check_reward_options(reward for _, reward, _, _ in rewards)
        ensure_env(config.env.id)
        checks.check_env_kwargs(config)
        checks.check_model_path(config.model.name_or_path)
        if config.model.critic:
            checks.check_model_path(config.model.critic, "model.critic")
        checks.check_advantage(config)


ROOT_NAMES = RootNames()



def resolve_config(base: Any = None, overrides: list[str] | None = None,
                   values: dict[str, Any] | None = None) -> RunConfig:
    """The validated RunConfig with every name checked against the registry (no model loads)."""
    return build_config(base, overrides, values, resolver=ROOT_NAMES)


def resolve_rewards(config: RunConfig) -> list[tuple[str, Reward, float, float | None]]:
    """``(name, Reward, weight, timeout)`` for each configured reward; nothing is set up yet."""
    return [(r.name, reward_by_name(r.name, **r.options), r.weight, r.timeout) for r in config.rewards]


def pipeline_from_specs(specs: list[dict[str, Any]], **kwargs: Any) -> RewardPipeline:
    """A pipeline from ``{"name", "weight", "options", "timeout"}`` items (``rftgym eval``'s
    ``--reward``), each name resolved here; nothing is set up yet."""
    configs = [from_dict(RewardConfig, dict(spec), f"rewards[{i}]") for i, spec in enumerate(specs)]
    return RewardPipeline([(r.name, reward_by_name(r.name, **r.options), r.weight, r.timeout) for r in configs],
                          **kwargs)


class NoRewards:
    """The pipeline of a run whose env computes its own reward (``rewards: []``)."""

    rewards: dict[str, Reward] = {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""

    def frozen(self) -> "NoRewards":
        return self

    def close(self) -> None:
        """Nothing to release."""


def is_multi_turn(env_id: str) -> bool:
    """Whether ``env_id`` runs as multi-turn episodes (it has no natively batched bandit entry point)."""
    import gymnasium

    from ..envs.multiturn import is_multi_turn_spec

    ensure_env(env_id)
    return is_multi_turn_spec(gymnasium.spec(env_id))


def build_pipeline(config: RunConfig) -> RewardPipeline | NoRewards:
    """The training reward pipeline, from resolved reward objects (``rewards: []``: none)."""
    if not config.rewards:
        return NoRewards()
    return RewardPipeline(resolve_rewards(config), on_error=config.rollout.reward_errors,
                          fallback=config.rollout.reward_fallback)


class SharedRewards:
    """One reward object per name for the envs' answer checks.

    A check that names a reward of the pipeline gets that very object; any other (``math``
    when only ``format`` is trained on) is made once and shared by the training and the
    evaluation env, so it runs one worker pool, not one per env.
    """

    def __init__(self, pipeline: RewardPipeline) -> None:
        self._made: dict[str, Reward] = {}
        self._pipeline = {name: reward for name, reward in pipeline.rewards.items() if not reward.options}

    def __call__(self, name: str) -> Reward:
        if name in self._pipeline:
            return self._pipeline[name]
        if name not in self._made:
            self._made[name] = reward_by_name(name)
        return self._made[name]

    def close(self) -> None:
        """Close the rewards made here (the pipeline closes its own)."""
        for reward in self._made.values():
            reward.close()


@dataclass
class Envs:
    """The training env, the held-out one (or None) and what they share."""

    train: Any
    eval: Any
    pipeline: RewardPipeline
    checks: SharedRewards

    def close(self) -> None:
        """Close the envs, then the rewards they were lent."""
        for env in (self.train, self.eval):
            if env is not None:
                env.close()
        self.checks.close()
        self.pipeline.close()


def build_envs(config: RunConfig, num_prompts: int, group_size: int, with_eval: bool) -> Envs:
    """The training env (``num_prompts`` × ``group_size``) and, ``with_eval``, the held-out env.

    The evaluation env scores through a frozen view of the training pipeline: the same
    reward objects, whose state (a reward model's running statistics) evaluation never moves.
    """
    pipeline = build_pipeline(config)
    checks = SharedRewards(pipeline)
    envs = Envs(None, None, pipeline, checks)
    try:
        kwargs = dict(config.env.kwargs)
        if is_multi_turn(config.env.id):
            _build_episodes(config, envs, kwargs, num_prompts, group_size, with_eval)
            return envs
        if not config.rewards:
            raise ConfigError(f"config key 'rewards' is empty, but env {config.env.id!r} scores completions with "
                              f"the configured rewards; name at least one (e.g. rewards: [{{name: math}}])")
        envs.train = make_vec(config.env.id, num_envs=num_prompts * group_size, group_size=group_size,
                              reward=pipeline, reward_resolver=checks, **kwargs)
        if with_eval:
            eval_kwargs = {**kwargs, **config.env.eval_kwargs}
            eval_kwargs.setdefault("order", "sequential")
            n = min(config.eval.batch_size, config.eval.num_prompts)
            envs.eval = make_vec(config.env.id, num_envs=n, group_size=1, reward=pipeline.frozen(),
                                 reward_resolver=checks, **eval_kwargs)
    except (ValueError, TypeError) as exc:  # the env refused its arguments (a user's value)
        envs.close()
        if isinstance(exc, RftgymError):
            raise
        raise ConfigError(f"env {config.env.id!r} refused env.kwargs: {type(exc).__name__}: {exc}") from None
    except BaseException:
        envs.close()
        raise
    return envs


def _build_episodes(config: RunConfig, envs: Envs, kwargs: dict[str, Any], num_prompts: int, group_size: int,
                    with_eval: bool) -> None:
    """A multi-turn env computes its own reward in ``step``: it takes no reward pipeline."""
    from ..envs.multiturn import accepts_keyword, make_episodes

    env_id = config.env.id
    if config.rewards:
        raise ConfigError(f"env {env_id!r} is a multi-turn env that computes its own reward in step(); "
                          f"set rewards: [] (got {[r.name for r in config.rewards]})")
    envs.train = make_episodes(env_id, num_prompts * group_size, group_size, **kwargs)
    if with_eval:
        extra = dict(config.env.eval_kwargs)
        if "split" in extra and not accepts_keyword(env_id, "split"):
            extra.pop("split")  # the default held-out split, for an env without splits
        n = min(config.eval.batch_size, config.eval.num_prompts)
        envs.eval = make_episodes(env_id, n, 1, **{**kwargs, **extra})


@dataclass
class Models:
    """The policy network and what the algorithm asks for beside it."""

    model: Any
    tokenizer: Any
    reference: Any = None
    critic: Any = None


def build_models(config: RunConfig, algorithm: Any, device: Any) -> Models:
    """Policy, and the frozen reference / the critic when ``algorithm`` needs them, on ``device``.

    Dropout is off everywhere, so π_θ at the update equals π_old at sampling; the policy and
    the critic are left in training mode, so that gradient checkpointing (which transformers
    applies only in training mode) really runs.
    """
    from .checks import offline_unless_hub_reachable
    from .models import load_policy  # deferred: transformers and torch load only when a run starts

    offline_unless_hub_reachable(config.model.name_or_path)
    lora = config.model.lora
    if lora.r > 0 and config.train.distributed == "fsdp" and os.environ.get("WORLD_SIZE", "1") != "1":
        from ..errors import ConfigError

        raise ConfigError("model.lora.r > 0 is not supported with train.distributed=fsdp; use ddp "
                          "(the adapters are small) or model.lora.r=0")
    model, tokenizer = load_policy(config.model)
    model.to(device)
    _disable_dropout(model)
    critic = None
    if algorithm.needs_critic:
        from .critic import ValueModel  # deferred, as above: torch and transformers

        # built before the policy gets its adapters: the critic's backbone is the base model's
        critic = (ValueModel.from_pretrained(config.model.critic, trust_remote_code=config.model.trust_remote_code)
                  if config.model.critic else ValueModel.from_causal_lm(model))
        _disable_dropout(critic)
    if lora.r > 0:
        from .lora import AdaptersDisabled, apply_lora

        model = apply_lora(model, lora, config.model.name_or_path)
        if critic is not None:  # the critic trains its own adapters and its value head
            critic.backbone = apply_lora(critic.backbone, lora, config.model.critic or config.model.name_or_path,
                                         task_type="FEATURE_EXTRACTION")
    model.train()
    models = Models(model, tokenizer)
    if algorithm.needs_reference:
        models.reference = (AdaptersDisabled(model) if lora.r > 0
                            else copy.deepcopy(model).eval().requires_grad_(False))
    if critic is not None:
        models.critic = critic.to(device).train()
    return models


def _disable_dropout(module: Any) -> None:
    import torch  # deferred: this module is imported by ``import rftgym`` (the resolver), torch is not

    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0


def build_algorithm(config: RunConfig) -> Any:
    """The algorithm object of ``config.algo``.

    A section built as data only (a bare AlgoConfig, no resolver) is rebuilt as the
    algorithm's own Config here, so its defaults and range checks apply.
    """
    cls = algorithm_class(config.algo.name)
    config_cls = getattr(cls, "Config", AlgoConfig)
    if not isinstance(config.algo, config_cls):
        config.algo = algo_config_from_dict(to_dict(config.algo), config_cls=config_cls)
        config.algo.validate()
    name = getattr(config.algo, "advantage", None)
    params = inspect.signature(cls).parameters.values()
    takes = any(p.name == "estimator" or p.kind is p.VAR_KEYWORD for p in params)
    if name is None or not takes:
        return cls(config.algo)  # (a third-party class without the keyword resolves it itself)
    manager = get_manager()  # the estimator is resolved here, once, like every other name
    return cls(config.algo, estimator=manager.lookup(manager.advantages, name))

