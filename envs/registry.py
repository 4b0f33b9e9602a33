"""Env ids to envs: Gymnasium's registry, after the plugin that provides the id has loaded."""
from __future__ import annotations

from typing import Any

from ..errors import UnknownNameError, unknown_name_message
from ..plugins.manager import get_manager


def ensure_env(id: str) -> None:
    """Load the plugins until ``id`` is registered, or raise naming the closest registered id."""
    import gymnasium  # deferred: gymnasium's import is not free and ``import rftgym`` must stay light

    manager = get_manager()
    manager.load_builtins()
    if id not in gymnasium.envs.registry:
        manager.load_entry_points()
    if id not in gymnasium.envs.registry:
        ids = [i for i in gymnasium.envs.registry if i.startswith("rftgym/")] + manager.envs.names()
        raise UnknownNameError(unknown_name_message("env", id, set(ids)))


def make(id: str, **kwargs: Any):
    """``gymnasium.make`` that first loads the plugin that provides ``id`` if needed."""
    import gymnasium

    ensure_env(id)
    return gymnasium.make(id, **kwargs)


def make_vec(id: str, num_envs: int, group_size: int = 1, **kwargs: Any):
    """The natively batched env: ``num_envs // group_size`` prompts, each repeated ``group_size`` times."""
    import gymnasium

    ensure_env(id)
    return gymnasium.make_vec(id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                              group_size=group_size, **kwargs)
