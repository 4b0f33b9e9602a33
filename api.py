"""The public Python surface: look-ups by name and in-process registration."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from .plugins.manager import get_manager


def load_plugins(plugins: Iterable[str] = (), *, strict: bool | None = None) -> None:
    """Load built-ins, the ``rftgym`` entry points (honouring ``RFTGYM_LOAD_PLUGINS``) and
    any explicit ``plugins`` (module names or ``.py`` paths). Idempotent."""
    manager = get_manager()
    manager.load_entry_points(strict=strict)
    for spec in plugins:
        manager.load_plugin(spec)


def get_reward(name: str, **options: Any):
    """A ready reward callable for ``name`` (TRL signature; positional or keyword call).

    Options go to the reward's constructor (class rewards) or are bound as keyword
    arguments (function rewards); resources are set up lazily on the first call.
    """
    from .rewards.base import Reward

    manager = get_manager()
    return Reward(name, manager.lookup(manager.rewards, name), options)


def get_algorithm(name: str) -> type:
    """The algorithm class registered as ``name`` (its ``Config`` dataclass holds its options)."""
    manager = get_manager()
    return manager.lookup(manager.algorithms, name)


def register_reward(name: str | Callable[..., Any], fn: Callable[..., Any] | type | None = None):
    """Register a reward in this process; usable as ``@register_reward("name")``.

    A bare ``@register_reward`` registers the function under its own ``__name__``.
    """
    if callable(name) and fn is None:
        get_manager().register_in_process("reward", name.__name__, name)
        return name
    if fn is None:
        def decorator(f):
            get_manager().register_in_process("reward", name, f)
            return f

        return decorator
    get_manager().register_in_process("reward", name, fn)
    return fn


def register_algorithm(name: str | type, cls: type | None = None):
    """Register an algorithm class in this process; usable as a class decorator.

    A bare ``@register_algorithm`` registers the class under its lower-cased ``__name__``.
    """
    if isinstance(name, type) and cls is None:
        get_manager().register_in_process("algorithm", name.__name__.lower(), name)
        return name
    if cls is None:
        def decorator(c):
            get_manager().register_in_process("algorithm", name, c)
            return c

        return decorator
    get_manager().register_in_process("algorithm", name, cls)
    return cls


def _ensure_env(id: str) -> None:
    import gymnasium

    manager = get_manager()
    manager.load_builtins()
    if id not in gymnasium.envs.registry:
        manager.load_entry_points()
    if id not in gymnasium.envs.registry:
        from .errors import UnknownNameError, unknown_name_message

        ids = [i for i in gymnasium.envs.registry if i.startswith("rftgym/")] + manager.envs.names()
        raise UnknownNameError(unknown_name_message("env", id, set(ids)))


def make(id: str, **kwargs: Any):
    """``gymnasium.make`` that first loads the plugin that provides ``id`` if needed."""
    import gymnasium

    _ensure_env(id)
    return gymnasium.make(id, **kwargs)


def make_vec(id: str, num_envs: int, group_size: int = 1, **kwargs: Any):
    """The natively batched env: ``num_envs // group_size`` prompts, each repeated ``group_size`` times."""
    import gymnasium

    _ensure_env(id)
    return gymnasium.make_vec(id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                              group_size=group_size, **kwargs)


def register_advantage(name: str | Callable[..., Any], fn: Callable[..., Any] | None = None):
    """Register an advantage estimator in this process (``algo.advantage: name``); usable as
    ``@register_advantage("name")``, or bare to use the function's ``__name__``."""
    if callable(name) and fn is None:
        get_manager().register_in_process("advantage", name.__name__, name)
        return name
    if fn is None:
        def decorator(f):
            get_manager().register_in_process("advantage", name, f)
            return f

        return decorator
    get_manager().register_in_process("advantage", name, fn)
    return fn
