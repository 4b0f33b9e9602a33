"""The env's scorer: one reward-pipeline call per batch, plus the ``correct`` check."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..rewards.base import Reward, reward_by_name
from ..rewards.pipeline import RewardPipeline


def as_pipeline(reward: Any, default: str | None) -> RewardPipeline:
    """A ``RewardPipeline`` from a name, a callable, a ``(name, fn, weight)`` tuple, a list of
    specs, a pipeline, or None (the source's ``default`` reward)."""
    if isinstance(reward, RewardPipeline):
        return reward
    if reward is None:
        if default is None:
            raise ConfigError("no reward given and this data has no default reward (pass reward=...)")
        reward = default
    if isinstance(reward, tuple) and len(reward) in (3, 4) and isinstance(reward[0], str) and callable(reward[1]):
        reward = [reward]  # one (name, fn, weight) spec on its own
    return RewardPipeline(reward)


class Scorer:
    """Scores batches: ``pipeline(prompts, completions, **columns)`` once, then the answer check.

    ``check="auto"`` uses the source's checker (``math`` when rows have answers); a check that
    names a reward already in the pipeline reuses its scores instead of calling it again. A
    check value of at least 0.5 counts as correct.

    Otherwise a named check is resolved with ``resolve`` (default: the plugin registry). The
    composition root passes one resolver to the training and the evaluation env, so a check
    reward that is not in the pipeline (``math`` when only ``format`` is trained on) is one
    object, with one worker pool, however many envs check with it.
    """

    def __init__(self, reward: Any, check: Any, default_reward: str | None, checker: str | None,
                 resolve: Callable[[str], Any] | None = None) -> None:
        self.pipeline = as_pipeline(reward, default_reward)
        self.check = checker if isinstance(check, str) and check == "auto" else check
        self._resolve = resolve
        self._check_fn: Any = None

    def _check_values(self, result: Any, prompts: list[str], completions: list[str],
                      columns: dict[str, list], group_ids: Any = None) -> np.ndarray | None:
        if self.check is None:
            return None
        if isinstance(self.check, str) and self.check in result.per_reward:
            values = np.asarray(result.per_reward[self.check], dtype=np.float64)
        else:
            if self._check_fn is None:
                if isinstance(self.check, str):
                    self._check_fn = (self._resolve or reward_by_name)(self.check)
                else:
                    self._check_fn = self.check
            extra = {"group_ids": group_ids} if isinstance(self._check_fn, Reward) and self._check_fn.group else {}
            raw = self._check_fn(prompts=prompts, completions=completions, **extra, **columns)
            values = np.array([np.nan if v is None else float(v) for v in raw], dtype=np.float64)
        return np.nan_to_num(values, nan=0.0) >= 0.5

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], columns: dict[str, list],
                 group_ids: Sequence[int] | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int], np.ndarray | None]:
        """``(total float64[N], per_reward, faults, correct bool[N] or None)``; ``group_ids``
        (one per completion) are the GRPO groups that group rewards score together."""
        prompts, completions = list(prompts), list(completions)
        if group_ids is not None:
            group_ids = [int(g) for g in group_ids]
        result = self.pipeline(prompts, completions, group_ids=group_ids, **columns)
        total = np.asarray(result.total, dtype=np.float64)
        correct = self._check_values(result, prompts, completions, columns, group_ids)
        return total, dict(result.per_reward), dict(result.faults), correct

    def close(self) -> None:
        """Close the pipeline's rewards and the checker (unless a resolver lent it: its owner closes it)."""
        self.pipeline.close()
        if self._resolve is None and self._check_fn is not None and hasattr(self._check_fn, "close"):
            self._check_fn.close()


def check_completions(actions: Any, n: int) -> list[str]:
    """``actions`` as a list of ``n`` strings, or a clear error naming the first bad one."""
    if isinstance(actions, str):
        raise TypeError(f"step() expects a sequence of {n} completion strings, got a single str")
    try:
        items = list(actions)
    except TypeError:
        raise TypeError(f"step() expects a sequence of {n} completion strings, got {type(actions).__name__}") from None
    if len(items) != n:
        raise ValueError(f"step() expects {n} completions (one per sub-env), got {len(items)}")
    for i, item in enumerate(items):
        if isinstance(item, np.str_):
            items[i] = str(item)
        elif not isinstance(item, str):
            raise TypeError(f"completion {i} must be a str (the completion text), got {type(item).__name__}")
    return items
