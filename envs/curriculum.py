"""A difficulty curriculum: draw prompts by their running pass rate (``env.kwargs.curriculum``).

Every prompt of a finite pool (a dataset's rows, or a procedural task's problems up to
``max_pool``) keeps a running count of attempts ``n`` and passes ``s`` (one attempt per
completion, so a GRPO group of G adds G). A prompt is **skipped** once it has at least
``min_attempts`` attempts and was passed every time (too easy: its group has no variance, so
GRPO learns nothing from it) or never (too hard, for now). The others are drawn with weight
``p(1 − p)``, ``p = (s + 1) / (n + 2)`` (the Laplace estimate of the pass rate): largest for
prompts never tried or solved about half of the time, where a group's rewards vary most.
``decay < 1`` makes the counts a running (exponentially weighted) rate, so a prompt can come
back once its history fades; ``revisit > 0`` gives skipped prompts that weight directly.

The counts are the source's state (saved in the env's ``state_dict``, so in every
checkpoint), and a seeded ``reset`` starts them afresh. The curriculum applies to
``order="random"``; in ``order="sequential"`` (how the held-out evaluation env reads) every
prompt is read in order and nothing is recorded.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError, closest
from .sources import PromptSource


@dataclass
class CurriculumOptions:
    """The keys of ``env.kwargs.curriculum``."""

    min_attempts: int = 8
    """Attempts (completions) before a prompt may be skipped as always or never passed."""
    decay: float = 1.0
    """Each time a prompt is scored its old counts are multiplied by this (1: plain counts)."""
    pass_threshold: float = 0.5
    """A completion passes when the env's check says correct; without a check, when its total reward is at least this."""
    revisit: float = 0.0
    """Weight of a skipped prompt (0: never drawn again while prompts in between remain)."""
    max_pool: int = 100_000
    """Most prompts of a procedural task taken into the pool (a dataset's rows are all taken)."""

    @classmethod
    def from_value(cls, value: Any) -> "CurriculumOptions":
        """From ``True``, a mapping of the fields above, or an instance; anything else is a ConfigError."""
        if isinstance(value, cls):
            return value
        if value is True:
            return cls()
        if not isinstance(value, Mapping):
            raise ConfigError(f"env curriculum must be true or a mapping of options, got {value!r}")
        names = [f.name for f in fields(cls)]
        for key in value:
            if key not in names:
                hint = closest(str(key), names)
                did = f"; did you mean {hint!r}?" if hint else ""
                raise ConfigError(f"curriculum has no option {key!r}{did} accepted: {', '.join(names)}")
        opts = cls(**dict(value))
        opts.check()
        return opts

    def check(self) -> None:
        """Range checks, each naming its key."""
        def bad(key: str, accepted: str) -> None:
            raise ConfigError(f"curriculum.{key} = {getattr(self, key)!r} is invalid; expected {accepted}")

        if not isinstance(self.min_attempts, int) or isinstance(self.min_attempts, bool) or self.min_attempts < 1:
            bad("min_attempts", "an integer >= 1")
        if not _number(self.decay) or not 0 < self.decay <= 1:
            bad("decay", "a number in (0, 1]")
        if not _number(self.pass_threshold):
            bad("pass_threshold", "a number")
        if not _number(self.revisit) or self.revisit < 0:
            bad("revisit", "a number >= 0")
        if not isinstance(self.max_pool, int) or isinstance(self.max_pool, bool) or self.max_pool < 1:
            bad("max_pool", "an integer >= 1")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def pass_weights(attempts: np.ndarray, passes: np.ndarray, opts: CurriculumOptions) -> np.ndarray:
    """Sampling weight of every prompt (float64 [N]): ``p(1 − p)`` with the Laplace estimate
    ``p``, and ``revisit`` for prompts skipped as always or never passed."""
    p = (passes + 1.0) / (attempts + 2.0)
    weights = p * (1.0 - p)
    settled = attempts >= opts.min_attempts
    # Exact comparisons would miss the decayed case (s = n up to round-off): compare with a tolerance.
    always = settled & (passes >= attempts - 1e-9)
    never = settled & (passes <= 1e-9)
    weights[always | never] = opts.revisit
    return weights


class CurriculumSource(PromptSource):
    """Wraps a finite prompt source; draws rows by :func:`pass_weights` and records passes.

    ``pool`` gives the pool's size and its ``i``-th row; each drawn row carries ``key = i``,
    which the env hands back to :meth:`record` with the scored completions.
    """

    def __init__(self, inner: Any, options: Any) -> None:
        self.inner = inner
        self.options = CurriculumOptions.from_value(options)
        self.order = getattr(inner, "order", None) or getattr(getattr(inner, "position", None), "order", "random")
        self.size, self._row = _pool(inner, self.options.max_pool)
        self.default_reward, self.checker = inner.default_reward, inner.checker
        self.restart()

    # -- PromptSource ---------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether draws follow the pass rates (random order) or the inner source's order."""
        return self.order == "random"

    def draw(self, rng: np.random.Generator, k: int) -> list[Any]:
        """``k`` distinct prompts by weight; when fewer than ``k`` have a non-zero weight, the
        rest are drawn uniformly from the skipped ones (a pool smaller than ``k`` repeats)."""
        if not self.active:
            return self.inner.draw(rng, k)
        weights = pass_weights(self.attempts, self.passes, self.options)
        live = np.flatnonzero(weights > 0)
        if live.size >= k:
            picked = rng.choice(live, size=k, replace=False, p=weights[live] / weights[live].sum())
        else:
            rest = np.flatnonzero(weights <= 0)
            extra = rng.choice(rest, size=k - live.size, replace=rest.size < k - live.size)
            picked = np.concatenate([rng.permutation(live), extra])
        rows = []
        for i in picked:
            row = self._row(int(i))
            row.key = int(i)
            rows.append(row)
        return rows

    def record(self, rows: list[Any], correct: np.ndarray | None, total: np.ndarray) -> None:
        """Count one attempt per scored completion (``rows[i]`` scored ``total[i]``, ``correct[i]``)."""
        if not self.active:
            return
        passed = (np.asarray(correct, dtype=bool) if correct is not None
                  else np.asarray(total, dtype=np.float64) >= self.options.pass_threshold)
        keys = np.array([-1 if row.key is None else row.key for row in rows], dtype=np.int64)
        ok = keys >= 0
        keys, passed = keys[ok], passed[ok]
        seen = np.unique(keys)
        if self.options.decay != 1.0:
            self.attempts[seen] *= self.options.decay
            self.passes[seen] *= self.options.decay
        np.add.at(self.attempts, keys, 1.0)
        np.add.at(self.passes, keys, passed.astype(np.float64))
        self._batch_rate = float(passed.mean()) if passed.size else float("nan")

    def metrics(self) -> dict[str, float]:
        """``curriculum/*``: the pool's share of unseen, skipped-as-solved, skipped-as-unsolved
        and drawable prompts, and the pass rate of the batch last recorded."""
        if not self.active:
            return {}
        opts = self.options
        settled = self.attempts >= opts.min_attempts
        solved = settled & (self.passes >= self.attempts - 1e-9)
        unsolved = settled & (self.passes <= 1e-9)
        n = float(self.size)
        return {"curriculum/pool": n,
                "curriculum/unseen": float((self.attempts == 0).sum()) / n,
                "curriculum/solved": float(solved.sum()) / n,
                "curriculum/unsolved": float(unsolved.sum()) / n,
                "curriculum/active": float((pass_weights(self.attempts, self.passes, opts) > 0).sum()) / n,
                "curriculum/batch_pass_rate": self._batch_rate}

    def restart(self) -> None:
        """A seeded reset: the inner source's order and fresh counts."""
        self.inner.restart()
        self.attempts = np.zeros(self.size, dtype=np.float64)
        self.passes = np.zeros(self.size, dtype=np.float64)
        self._batch_rate = float("nan")

    def state_dict(self) -> dict[str, Any]:
        # Python floats survive JSON exactly (repr round-trips), so a resume is bit-exact.
        return {"inner": self.inner.state_dict(), "attempts": self.attempts.tolist(),
                "passes": self.passes.tolist(), "batch_rate": self._batch_rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        attempts, passes = state["attempts"], state["passes"]
        if len(attempts) != self.size or len(passes) != self.size:
            raise ConfigError(f"the saved curriculum has {len(attempts)} prompts but this env's pool has "
                              f"{self.size}: resume with the same env.kwargs")
        self.attempts = np.asarray(attempts, dtype=np.float64)
        self.passes = np.asarray(passes, dtype=np.float64)
        self._batch_rate = float(state.get("batch_rate", float("nan")))


def _pool(source: Any, max_pool: int) -> tuple[int, Callable[[int], Any]]:
    """``(size, row_of_index)`` for a finite source: a table's usable rows, or a task's
    problems in its fixed order (at most ``max_pool``)."""
    if hasattr(source, "indices") and hasattr(source, "mapper"):  # a table
        def table_row(i: int) -> Any:
            j = source.indices[i]
            return source.mapper.row(dict(source.table[j]), source.answers[j])

        return len(source.indices), table_row
    if hasattr(source, "task"):  # a procedural task: its problems in their fixed order
        raws = list(itertools.islice(iter(source.task), max_pool))
        if not raws:
            raise ConfigError("the curriculum found no problems in this task's split")
        return len(raws), lambda i: source._row(raws[i])
    raise ConfigError("a curriculum needs a finite prompt set (a dataset that is not streamed, or a "
                      f"procedural task); got a {type(source).__name__}")
