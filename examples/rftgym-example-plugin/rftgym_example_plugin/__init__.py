"""An example rftgym plugin: one reward (``brevity``) and one env (``rftgym_example/Parity-v0``).

rftgym finds this module through the entry point in pyproject.toml
(``[project.entry-points.rftgym] example = "rftgym_example_plugin"``) and calls the hooks
below with a ``register`` callback. Registration stays cheap: the env is registered by
``"module:Class"`` strings, so nothing heavy is imported until the env is made.
"""
from __future__ import annotations

from typing import Any, Callable

import rftgym

from .rewards import BrevityReward

__version__ = "0.1.0"

PARITY_ID = "rftgym_example/Parity-v0"


@rftgym.hookimpl
def rftgym_register_rewards(register: Callable[..., Any]) -> None:
    register("brevity", BrevityReward)


@rftgym.hookimpl
def rftgym_register_envs(register: Callable[..., Any]) -> None:
    # The arguments of gymnasium.register; no max_episode_steps (a TimeLimit wrapper would
    # mark the single step as truncated).
    register(PARITY_ID, entry_point="rftgym_example_plugin.parity:ParityEnv",
             vector_entry_point="rftgym_example_plugin.parity:ParityVectorEnv")
