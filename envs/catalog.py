"""The env ids rftgym ships (registered with Gymnasium by the built-in plugin).

String entry points only, so registering costs nothing; no ``max_episode_steps`` (a TimeLimit
wrapper would mark the single step as truncated).
"""
from __future__ import annotations

from typing import Any, Callable

SINGLE = "rftgym.envs.bandit:PromptBanditEnv"
VECTOR = "rftgym.envs.vector:PromptBanditVectorEnv"

BUILTIN_ENVS: dict[str, dict[str, Any]] = {
    "rftgym/Arithmetic-v0": {"task": "arithmetic"},
    "rftgym/Countdown-v0": {"task": "countdown"},
    "rftgym/PythonTests-v0": {"task": "python_tests"},
    "rftgym/ReasoningGym-v0": {"task": "reasoning_gym"},
    # data comes from the user's kwargs (dataset=, path=, data_files=); made without it: TypeError
    "rftgym/PromptDataset-v0": {"env_id": "rftgym/PromptDataset-v0"},
    "rftgym/GSM8K-v0": {"preset": "gsm8k", "env_id": "rftgym/GSM8K-v0"},
    "rftgym/MATH-v0": {"preset": "math", "env_id": "rftgym/MATH-v0"},
}


# id -> "module:function" listing the task names the env accepts (``rftgym plugins`` shows them)
ENV_TASKS: dict[str, str] = {"rftgym/ReasoningGym-v0": "rftgym.envs.tasks.reasoning_gym:task_names"}


# Multi-turn envs: a plain ``gymnasium.Env`` each, no vector entry point (the runner batches
# episodes itself, see envs/multiturn.py).
MULTI_TURN_ENVS: dict[str, str] = {
    "rftgym/ToolArithmetic-v0": "rftgym.envs.tasks.tool_arithmetic:ToolArithmeticEnv",
}


def register_builtin_envs(register: Callable[..., Any]) -> None:
    """Register every built-in id through the plugin hook's ``register`` callback."""
    for env_id, kwargs in BUILTIN_ENVS.items():
        extra = {"tasks": ENV_TASKS[env_id]} if env_id in ENV_TASKS else {}
        register(env_id, entry_point=SINGLE, vector_entry_point=VECTOR, kwargs=dict(kwargs), **extra)
    for env_id, entry_point in MULTI_TURN_ENVS.items():
        register(env_id, entry_point=entry_point)
