"""The env ids rftgym ships (registered with Gymnasium by the built-in plugin)."""
from __future__ import annotations

from typing import Any, Callable

VECTOR = "rftgym.envs.vector:PromptBanditVectorEnv"


def register_builtin_envs(register: Callable[..., Any]) -> None:
    register("rftgym/Arithmetic-v0", entry_point="rftgym.envs.bandit:PromptBanditEnv",
             vector_entry_point=VECTOR, kwargs={"task": "arithmetic"})
