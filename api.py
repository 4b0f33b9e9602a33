"""The public Python surface: look-ups by name and in-process registration."""
from __future__ import annotations

from typing import Any, Callable

from .envs.registry import make, make_vec  # noqa: F401  (public: rftgym.make, rftgym.make_vec)
from .plugins.manager import get_manager
from .rewards.base import reward_by_name
from .runner.build import algorithm_class, load_plugins  # noqa: F401  (public: rftgym.load_plugins)


def get_reward(name: str, **options: Any):
    """A ready reward callable for ``name`` (TRL signature; positional or keyword call).

    Options go to the reward's constructor (class rewards) or are bound as keyword
    arguments (function rewards); resources are set up lazily on the first call.
    """
    return reward_by_name(name, **options)


def get_algorithm(name: str) -> type:
    """The algorithm class registered as ``name`` (its ``Config`` dataclass holds its options)."""
    return algorithm_class(name)


def register_reward(name: str | Callable[..., Any], fn: Callable[..., Any] | type | None = None, *,
                    group: bool = False):
    """Register a reward in this process; usable as ``@register_reward("name")``.

    A bare ``@register_reward`` registers the function under its own ``__name__``.
    ``group=True`` makes it a group reward: called once per prompt with that prompt's G
    completions (and their columns), returning G scores.
    """
    if callable(name) and fn is None:
        get_manager().register_in_process("reward", name.__name__, name, group=group)
        return name
    if fn is None:
        def decorator(f):
            get_manager().register_in_process("reward", name, f, group=group)
            return f

        return decorator
    get_manager().register_in_process("reward", name, fn, group=group)
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
