"""Multi-turn text episodes: any ``gymnasium.Env`` with text spaces, batched G copies per start.

The contract is plain Gymnasium: ``reset()`` returns the first prompt (a string);
``step(completion)`` returns ``(observation, reward, terminated, truncated, info)`` where the
observation is the env's reply (a string, or a chat message ``{"role": "tool"|"user",
"content": str}``) that is appended to the transcript before the model's next turn. The
single-step bandit is the case that terminates after one step.

:class:`EpisodeVectorEnv` holds ``num_envs`` such envs, ``group_size`` of which start from
the same initial observation (they are reset with the same seed), and steps only the episodes
still running. It knows nothing about tokens or models: the runner
(``rftgym.runner.episodes``) turns observations into tokens and enforces the turn and token
budgets. A sub-env that raises, or returns something that is not an observation, is reported
per episode in ``info["errors"]`` (the runner raises or counts it, per
``rollout.reward_errors``), so one bad episode never takes the batch down unnoticed.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import numpy as np
from gymnasium.utils import seeding

MESSAGE_ROLES = ("tool", "user")


def _wrapper_attr(env: Any, name: str) -> Any:
    """``name`` from the outermost wrapper of ``env`` that has it (None when none has)."""
    try:
        return env.get_wrapper_attr(name) if hasattr(env, "get_wrapper_attr") else getattr(env, name)
    except AttributeError:
        return None


def observation_error(obs: Any) -> str | None:
    """Why ``obs`` is not a valid text observation (None when it is)."""
    if isinstance(obs, str):
        return None
    if isinstance(obs, dict):
        if obs.get("role") not in MESSAGE_ROLES:
            return f"a message observation needs role 'tool' or 'user', got {obs.get('role')!r}"
        if not isinstance(obs.get("content"), str):
            return f"a message observation needs a string 'content', got {type(obs.get('content')).__name__}"
        return None
    return (f"the observation must be a string or a {{'role': 'tool'|'user', 'content': str}} message, "
            f"got {type(obs).__name__}")


def observation_text(obs: str | dict) -> str:
    """The text of an observation (a message's content)."""
    return obs if isinstance(obs, str) else obs["content"]


class EpisodeVectorEnv:
    """``num_envs`` multi-turn episodes, ``num_envs // group_size`` distinct starts, groups contiguous.

    ``reset()`` draws one seed per group from its own RNG and resets every sub-env of the group
    with it; the observations are the first prompts. ``step(actions)`` steps the running
    episodes only (``actions[i]`` is ignored for a finished one) and returns per-episode
    ``(obs, rewards, terminated, truncated, info)``; ``info["errors"][i]`` is a one-line
    description when sub-env i raised or misbehaved (its episode is then over). The next
    ``reset()`` without a seed starts the next batch. ``state_dict()`` is the RNG from just
    before the current batch was drawn, so a restored env replays the same starts.
    """

    multi_turn = True

    def __init__(self, make_env: Callable[[], Any], num_envs: int, group_size: int = 1, *,
                 env_id: str = "env") -> None:
        if num_envs < 1 or group_size < 1 or num_envs % group_size:
            raise ValueError(f"num_envs={num_envs} must be a positive multiple of group_size={group_size}")
        self.num_envs, self.group_size = int(num_envs), int(group_size)
        self.num_prompts = self.num_envs // self.group_size
        self.env_id = env_id
        self.envs = [make_env() for _ in range(self.num_envs)]
        self.system_prompt: str | None = _wrapper_attr(self.envs[0], "system_prompt")
        self._rng, _ = seeding.np_random(None)
        self._snapshot: dict | None = None
        self._restored = False
        self._obs: list[Any] | None = None
        self._infos: list[dict] = []
        self.running = np.zeros(self.num_envs, dtype=bool)

    # -- batches ----------------------------------------------------------------------------------
    def _draw(self) -> None:
        self._snapshot = copy.deepcopy(self._rng.bit_generator.state)
        seeds = self._rng.integers(0, 2**31 - 1, size=self.num_prompts)
        obs, infos = [], []
        for i, env in enumerate(self.envs):
            try:
                o, info = env.reset(seed=int(seeds[i // self.group_size]))
            except Exception as exc:
                raise RuntimeError(f"env {self.env_id!r} raised in reset(): {type(exc).__name__}: {exc}") from exc
            if not isinstance(o, str):
                raise TypeError(f"env {self.env_id!r}: reset() must return the first prompt as a string, "
                                f"got {type(o).__name__}")
            obs.append(o)
            infos.append(info)
        self._obs, self._infos = obs, infos
        self.running[:] = True

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[tuple[str, ...], dict]:
        """Start the next batch of episodes (a seeded reset restarts the sequence of starts)."""
        if seed is not None:
            self._rng, _ = seeding.np_random(seed)
        if not (self._restored and seed is None):
            self._draw()
        self._restored = False
        return tuple(self._obs), {"group_id": np.repeat(np.arange(self.num_prompts), self.group_size),
                                  "row": list(self._infos)}

    def step(self, actions: list[str | None]) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every running episode with its action; finished ones return ``None``, 0, True."""
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        self._restored = False  # the batch is in play: the next reset() draws a new one
        n = self.num_envs
        obs: list[Any] = [None] * n
        rewards = np.zeros(n, dtype=np.float64)
        terminated = ~self.running.copy()
        truncated = np.zeros(n, dtype=bool)
        infos: list[dict] = [{} for _ in range(n)]
        errors: list[str | None] = [None] * n
        for i in np.flatnonzero(self.running):
            try:
                o, r, term, trunc, info = self.envs[i].step(actions[i])
            except Exception as exc:
                errors[i] = f"env {self.env_id!r} raised in step(): {type(exc).__name__}: {exc}"
                terminated[i] = True
                self.running[i] = False
                continue
            why = observation_error(o)
            if why is None and not (isinstance(r, (int, float, np.number)) and math.isfinite(float(r))):
                why = f"the reward must be a finite number, got {r!r}"
            if why is not None:
                errors[i] = f"env {self.env_id!r}: step() returned a bad result: {why}"
                terminated[i] = True
                self.running[i] = False
                continue
            obs[i], rewards[i], terminated[i], truncated[i] = o, float(r), bool(term), bool(trunc)
            infos[i] = info if isinstance(info, dict) else {}
            if term or trunc:
                self.running[i] = False
        return obs, rewards, terminated, truncated, {"errors": errors, "infos": infos}

    def stop(self, i: int) -> None:
        """End episode ``i`` early (the runner's turn or token budget ran out)."""
        self.running[i] = False

    # -- resumption -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable RNG state from just before the current batch was drawn."""
        if self._snapshot is None:
            return {"version": 1, "pending": False, "rng": self._rng.bit_generator.state}
        return {"version": 1, "pending": True, "rng": self._snapshot}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next unseeded ``reset()`` shows the saved batch again."""
        if state.get("version") != 1:
            raise ValueError(f"unsupported multi-turn env state version {state.get('version')!r}")
        self._rng = np.random.Generator(np.random.PCG64())
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._restored = False
        if state["pending"]:
            self._draw()
            self._restored = True

    def close(self) -> None:
        """Close every sub-env."""
        for env in self.envs:
            env.close()


def is_multi_turn_spec(spec: Any) -> bool:
    """Whether a registered id is run as episodes: it has no natively batched bandit entry point."""
    return getattr(spec, "vector_entry_point", None) is None


def make_episodes(env_id: str, num_envs: int, group_size: int = 1, **kwargs: Any) -> EpisodeVectorEnv:
    """``num_envs`` copies of the registered multi-turn env ``env_id`` (``gymnasium.make``)."""
    import gymnasium

    return EpisodeVectorEnv(lambda: gymnasium.make(env_id, **kwargs), num_envs, group_size, env_id=env_id)


def accepts_keyword(env_id: str, name: str) -> bool:
    """Whether the registered entry point of ``env_id`` takes the keyword ``name``."""
    import inspect

    import gymnasium

    entry = gymnasium.spec(env_id).entry_point
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        import importlib

        entry = getattr(importlib.import_module(module), attr)
    try:
        params = inspect.signature(entry).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
