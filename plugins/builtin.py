"""The built-in plugin: everything rftgym ships, registered through the public hooks.

Entries are lazy ``"module:attr"`` references so that ``import rftgym`` stays cheap.
"""
from __future__ import annotations

from typing import Any, Callable

from .hookspecs import hookimpl


@hookimpl
def rftgym_register_rewards(register: Callable[..., Any]) -> None:
    from ..rewards.catalog import BUILTIN_REWARDS, GROUP_REWARDS

    for name, ref in BUILTIN_REWARDS.items():
        register(name, ref, group=name in GROUP_REWARDS)


@hookimpl
def rftgym_register_algorithms(register: Callable[..., Any]) -> None:
    from ..algos.catalog import BUILTIN_ALGORITHMS

    for name, ref in BUILTIN_ALGORITHMS.items():
        register(name, ref)


@hookimpl
def rftgym_register_advantages(register: Callable[..., Any]) -> None:
    from ..algos.catalog import BUILTIN_ADVANTAGES

    for name, ref in BUILTIN_ADVANTAGES.items():
        register(name, ref)


@hookimpl
def rftgym_register_envs(register: Callable[..., Any]) -> None:
    from ..envs.catalog import register_builtin_envs

    register_builtin_envs(register)
