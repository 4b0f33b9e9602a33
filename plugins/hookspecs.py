"""The four hooks a plugin may implement. Each receives a ``register`` callback.

A plugin is any module or object with functions marked ``@rftgym.hookimpl``::

    import rftgym

    @rftgym.hookimpl
    def rftgym_register_rewards(register):
        register("shout", lambda prompts, completions, **kw: [float(c.isupper()) for c in completions])
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "rftgym"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def rftgym_register_rewards(register: Callable[..., Any]) -> None:
    """Register rewards: ``register(name, fn_or_class)``.

    A function is called as ``fn(prompts=[...], completions=[...], **columns)`` and returns
    one ``float | None`` per completion (TRL's reward signature). A class is instantiated with
    the reward's options (``get_reward(name, **options)``); its instances are called the same
    way and may define ``setup()`` (called lazily before the first call) and ``close()``.

    ``register(name, fn_or_class, group=True)`` declares a **group reward**: it is called once
    per prompt with that prompt's G completions (in sampling order) and the columns of those
    G samples, and returns G scores (e.g. a ranking of the group). Weights, logging and the
    fault rules are those of every reward.
    """


@hookspec
def rftgym_register_algorithms(register: Callable[..., Any]) -> None:
    """Register algorithms: ``register(name, cls)`` with ``cls`` a subclass of
    :class:`rftgym.algos.base.Algorithm` (its ``Config`` dataclass holds the hyper-parameters)."""


@hookspec
def rftgym_register_advantages(register: Callable[..., Any]) -> None:
    """Register advantage estimators: ``register(name, fn)``, chosen with ``algo.advantage: name``.

    ``fn(rewards [N], mask [N, T], *, group_size, ...) -> Tensor`` ([N] per sequence or [N, T]
    per token); its other keyword parameters are filled from the algorithm config keys of the
    same name (see :mod:`rftgym.algos.advantages`).
    """


@hookspec
def rftgym_register_envs(register: Callable[..., Any]) -> None:
    """Register Gymnasium env ids: ``register(id, entry_point=..., vector_entry_point=..., kwargs=...)``.

    The arguments are those of :func:`gymnasium.register`; use string entry points
    (``"pkg.module:Class"``) so registration stays cheap. Do not pass ``max_episode_steps``.
    rftgym's own optional ``tasks="pkg.module:function"`` (a function returning the names the
    env's ``tasks=`` option accepts) makes ``rftgym plugins`` list them.
    """
