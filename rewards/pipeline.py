"""Several named, weighted rewards scored in one call per batch: the ``RewardPipeline``.

Contract (docs/internals.md): ``pipeline(prompts, completions, **columns)`` calls every reward
once with keyword arguments exactly as TRL's ``GRPOTrainer`` does and returns a
:class:`RewardResult`. A group reward (``Reward.group``) is called once per group instead —
the groups given by ``group_ids=`` (the vector env passes them), else runs of equal prompts —
and the same weights, metrics, timeouts and fault rules apply to its batch of groups:

- ``per_reward[name]`` holds each reward's values (NaN where it returned ``None``,
  i.e. "not applicable");
- ``total`` is the weighted sum over rewards with a non-zero weight, skipping ``None``
  entries like TRL's ``nansum``; zero-weight rewards are computed and logged only;
- ``faults[name]`` counts the samples where the reward failed (raised, timed out, wrong
  length, non-number, NaN/inf) and ``fallback`` was used (``on_error="warn"``), and
  ``faults["total"]`` counts samples for which no weighted reward applied.

Never a silent zero: a failure either raises :class:`RewardError` naming the reward and the
problem (``on_error="raise"``, the default) or logs one warning per reward per batch and
substitutes ``fallback`` for that reward's value on the affected samples (``on_error="warn"``).
A sample where every weighted reward returned ``None`` gets ``total = fallback``: TRL turns
that NaN into 0 with a warning; we count it in ``faults["total"]`` and log it in both modes,
without raising, since a mix of tasks can legitimately leave a sample without an applicable
reward.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, RftgymError, closest
from .base import Reward, reward_by_name
from .guard import RewardFault, call_reward, check_values
from .result import TOTAL, RewardResult, metrics  # noqa: F401  (metrics: public here too)

logger = logging.getLogger("rftgym.rewards")

_SPEC_KEYS = ("name", "weight", "options", "timeout")


class RewardError(RftgymError):
    """A reward failed (raised, timed out, returned the wrong length, a non-number, NaN or inf)."""


@dataclass
class _Entry:
    name: str
    reward: Reward
    weight: float
    timeout: float | None


class RewardPipeline:
    """Score a batch with several named, weighted rewards (one call per reward per batch).

    ``specs`` items may be ``(name, callable, weight)`` tuples (an optional 4th item is a
    timeout in seconds), dicts ``{"name", "weight", "options", "timeout"}``, objects with
    ``.name``/``.weight``/``.options`` (``config.RewardConfig``), bare registered names, or bare
    callables (weight 1). The composition root passes ready ``Reward`` objects; a bare name or
    a dict is looked up in the plugin registry below this package
    (:func:`rftgym.rewards.base.reward_by_name`, what ``rftgym.get_reward`` is), never through
    ``api`` or the runner.

    ``timeout`` (seconds, default none) applies to every reward without its own. It is meant
    for in-process rewards: the call runs in a worker thread and the pipeline stops waiting
    after the timeout, treating it as a failure.
    """

    def __init__(self, specs: Iterable[Any], on_error: str = "raise", fallback: float = 0.0,
                 timeout: float | None = None) -> None:
        if on_error not in ("raise", "warn"):
            raise ConfigError(f"reward on_error must be 'raise' or 'warn', got {on_error!r}")
        self.on_error = on_error
        self.fallback = _finite(fallback, "reward fallback")
        self.timeout = _timeout(timeout, "pipeline")
        self._frozen = False
        if isinstance(specs, (str, Mapping)) or callable(specs):
            specs = [specs]  # one reward given on its own
        self._entries: list[_Entry] = []
        for spec in specs:
            entry = self._resolve(spec)
            if entry.name == TOTAL:
                raise ConfigError(f"reward name {TOTAL!r} is reserved for the summed reward; register it under another name")
            if any(e.name == entry.name for e in self._entries):
                raise ConfigError(f"reward {entry.name!r} appears twice in the pipeline; "
                                  "register the second one under another name to use different options")
            self._entries.append(entry)
        if not self._entries:
            raise ConfigError("the reward pipeline needs at least one reward")
        if all(e.weight == 0 for e in self._entries):
            raise ConfigError("every reward has weight 0, so there is nothing to optimise; "
                              "give at least one reward a non-zero weight")

    # -- construction ---------------------------------------------------------------------
    def _resolve(self, spec: Any) -> _Entry:
        """Turn one spec into a named ``Reward`` with a weight and a timeout."""
        if isinstance(spec, str):
            return _Entry(spec, reward_by_name(spec), 1.0, self.timeout)
        if isinstance(spec, (tuple, list)):
            if not 2 <= len(spec) <= 4 or not isinstance(spec[0], str) or not callable(spec[1]):
                raise ConfigError(f"reward spec {spec!r}: expected (name, callable, weight[, timeout])")
            name, fn = spec[0], spec[1]
            weight = _finite(spec[2] if len(spec) > 2 else 1.0, f"weight of reward {name!r}")
            timeout = _timeout(spec[3], name) if len(spec) > 3 else self.timeout
            return _Entry(name, _as_reward(name, fn), weight, timeout)
        if isinstance(spec, Mapping):
            for key in spec:
                if key not in _SPEC_KEYS:
                    hint = closest(key, _SPEC_KEYS)
                    did = f"; did you mean {hint!r}?" if hint else ""
                    raise ConfigError(f"reward spec has no key {key!r}{did} accepted: {', '.join(_SPEC_KEYS)}")
            if "name" not in spec:
                raise ConfigError(f"reward spec {dict(spec)!r} has no 'name'")
            return self._from_fields(spec["name"], spec.get("weight", 1.0), spec.get("options"),
                                     spec.get("timeout", self.timeout))
        if isinstance(spec, Reward) or callable(spec):
            # Checked before the attribute form: a Reward forwards unknown attributes to its
            # implementation, so probing ``.weight`` on it would set the reward up.
            name = spec.name if isinstance(spec, Reward) else getattr(spec, "__name__", None)
            if not isinstance(name, str):
                raise ConfigError(f"reward {spec!r} has no name; pass it as (name, callable, weight)")
            return _Entry(name, _as_reward(name, spec), 1.0, self.timeout)
        if hasattr(spec, "name"):
            return self._from_fields(spec.name, getattr(spec, "weight", 1.0), getattr(spec, "options", None),
                                     getattr(spec, "timeout", self.timeout))
        raise ConfigError(f"cannot read a reward spec from {type(spec).__name__} {spec!r}; expected "
                          "(name, callable, weight), {'name', 'weight', 'options'}, a RewardConfig or a name")

    def _from_fields(self, name: Any, weight: Any, options: Any, timeout: Any) -> _Entry:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"reward name must be a non-empty string, got {name!r}")
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(f"options of reward {name!r} must be a mapping, got {type(options).__name__}")
        return _Entry(name, reward_by_name(name, **dict(options or {})),
                      _finite(weight, f"weight of reward {name!r}"), _timeout(timeout, name))

    # -- public surface -------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Reward names, in pipeline order."""
        return [e.name for e in self._entries]

    @property
    def weights(self) -> dict[str, float]:
        """name -> weight (0 = logged only)."""
        return {e.name: e.weight for e in self._entries}

    @property
    def rewards(self) -> dict[str, Reward]:
        """name -> the ready ``Reward`` wrapper."""
        return {e.name: e.reward for e in self._entries}

    def __call__(self, prompts: Sequence[Any] | None, completions: Sequence[Any], *,
                 group_ids: Sequence[int] | None = None, **columns: Any) -> RewardResult:
        """Score ``completions`` (with their ``prompts`` and per-sample ``columns``) with every
        reward; ``group_ids`` (one per completion) tells group rewards which completions share
        a prompt."""
        if self._frozen:
            states = self._states()
            try:
                return self._score_all(prompts, completions, columns, group_ids)
            finally:
                for name, state in states.items():
                    self.rewards[name].load_state_dict(state)
        return self._score_all(prompts, completions, columns, group_ids)

    def _states(self) -> dict[str, Any]:
        """name -> ``state_dict()`` of each reward that keeps state (set-up ones only)."""
        states = {}
        for entry in self._entries:
            impl = entry.reward.impl  # set up now: scoring would, and its state must be the one saved
            if callable(getattr(impl, "state_dict", None)):
                states[entry.name] = impl.state_dict()
        return states

    def state_dict(self) -> dict[str, Any]:
        """The state of every reward that keeps some (what a checkpoint stores)."""
        return self._states()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (rewards are set up first if need be)."""
        for name, reward_state in state.items():
            self.rewards[name].load_state_dict(reward_state)

    def _score_all(self, prompts: Sequence[Any] | None, completions: Sequence[Any], columns: dict,
                   group_ids: Sequence[int] | None = None) -> RewardResult:
        completions = _as_list(completions, "completions")
        n = len(completions)
        prompts = [""] * n if prompts is None else _as_list(prompts, "prompts")
        if len(prompts) != n:
            raise RewardError(f"got {len(prompts)} prompts for {n} completions; pass one prompt per completion")
        if group_ids is not None:
            group_ids = _as_list(group_ids, "group_ids")
            if len(group_ids) != n:
                raise RewardError(f"got {len(group_ids)} group ids for {n} completions; pass one per completion")
        for key, values in columns.items():
            if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
                raise RewardError(f"column {key!r} must be a list with one value per completion, "
                                  f"got {type(values).__name__}")
            if len(values) != n:
                raise RewardError(f"column {key!r} has {len(values)} values for {n} completions; "
                                  "every column needs one value per completion")
        total = np.zeros(n, dtype=np.float64)
        applicable = np.zeros(n, dtype=bool)
        per_reward: dict[str, np.ndarray] = {}
        faults: dict[str, int] = {}
        for entry in self._entries:
            values, bad = self._score(entry, prompts, completions, columns, group_ids)
            per_reward[entry.name] = values
            faults[entry.name] = int(bad)
            if entry.weight != 0:
                ok = ~np.isnan(values)
                total[ok] += entry.weight * values[ok]
                applicable |= ok
        missing = int(n - applicable.sum())
        faults[TOTAL] = missing
        if missing:
            total[~applicable] = self.fallback
            logger.warning("%d of %d samples had no applicable weighted reward (every one returned None); "
                           "their total is the fallback %s", missing, n, self.fallback)
        return RewardResult(total=total, per_reward=per_reward, faults=faults)

    def metrics(self, result: RewardResult) -> dict[str, float]:
        """Per-reward and total mean/std plus fault counts; see :func:`metrics`."""
        return metrics(result)

    def frozen(self) -> "RewardPipeline":
        """A view for evaluation: the same reward objects (one worker pool, one loaded model),
        but scoring through it leaves every reward's state (``state_dict``, e.g. a reward
        model's running normalisation) as it was, and closing it closes nothing."""
        view = object.__new__(RewardPipeline)
        view.__dict__.update(self.__dict__)
        view._frozen = True
        return view

    def close(self) -> None:
        """Close every reward (worker pools, models); raise the first failure after trying all.

        A :meth:`frozen` view owns nothing and closes nothing."""
        if self._frozen:
            return
        errors: list[str] = []
        for entry in self._entries:
            try:
                entry.reward.close()
            except Exception as exc:  # keep closing the others: a leaked pool is worse
                errors.append(f"{entry.name}: {type(exc).__name__}: {exc}")
        if errors:
            raise RewardError("closing rewards failed: " + "; ".join(errors))

    def __enter__(self) -> "RewardPipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = ", ".join(f"{e.name}={e.weight:g}" for e in self._entries)
        return f"RewardPipeline({parts}, on_error={self.on_error!r})"

    # -- scoring one reward ---------------------------------------------------------------
    def _score(self, entry: _Entry, prompts: list[Any], completions: list[Any],
               columns: dict[str, Any], group_ids: list[Any] | None = None) -> tuple[np.ndarray, int]:
        """One reward's values for the batch and the number of samples that used the fallback."""
        n = len(completions)
        try:
            # Set-up (process pools, model loading) happens outside the timeout and always
            # raises: warning on every batch and training on the fallback would hide a
            # misconfigured reward for a whole run.
            entry.reward.impl
        except Exception as exc:
            raise RewardError(f"reward {entry.name!r} failed to set up: {type(exc).__name__}: {exc}") from exc
        # Fresh lists per reward, so that one reward mutating its inputs cannot change another's.
        kwargs = {"prompts": list(prompts), "completions": list(completions),
                  **{k: list(v) for k, v in columns.items()}}
        if entry.reward.group and group_ids is not None:
            kwargs["group_ids"] = list(group_ids)
        values = np.full(n, np.nan, dtype=np.float64)
        try:
            raw = call_reward(entry.name, entry.reward, kwargs, entry.timeout)
            problems = check_values(entry.name, raw, n, values)
        except RewardFault as fault:
            problems = [fault]
        if not problems:
            return values, 0
        indices = sorted({i for p in problems for i in p.indices})
        message = "; ".join(str(p) for p in problems)
        if self.on_error == "raise":
            raise RewardError(f"{message} (set rollout.reward_errors='warn' to use a fallback value instead)")
        values[indices] = self.fallback
        logger.warning("%s; used the fallback %s for %d of %d samples", message, self.fallback, len(indices), n)
        return values, len(indices)


def _as_reward(name: str, fn: Any) -> Reward:
    """A ``Reward`` wrapper for a callable or class (kept as is when it already is one)."""
    return fn if isinstance(fn, Reward) else Reward(name, fn)


def _as_list(values: Any, what: str) -> list[Any]:
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
        raise RewardError(f"{what} must be a list, got {type(values).__name__}")
    return list(values)


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return number


def _timeout(value: Any, name: str) -> float | None:
    if value is None:
        return None
    number = _finite(value, f"timeout of {name!r}")
    if number <= 0:
        raise ConfigError(f"timeout of {name!r} must be positive seconds or None, got {value!r}")
    return number
