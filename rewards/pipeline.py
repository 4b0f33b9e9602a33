"""Several named, weighted rewards scored in one call per batch: the ``RewardPipeline``.

Contract (docs/internals.md): ``pipeline(prompts, completions, **columns)`` calls every reward
once with keyword arguments exactly as TRL's ``GRPOTrainer`` does and returns a
:class:`RewardResult`:

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
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, RftgymError, closest
from .base import Reward

logger = logging.getLogger("rftgym.rewards")

TOTAL = "total"
"""Key of ``faults`` (and of the ``reward/total/...`` metrics) for the summed reward."""

_SPEC_KEYS = ("name", "weight", "options", "timeout")


class RewardError(RftgymError):
    """A reward failed (raised, timed out, returned the wrong length, a non-number, NaN or inf)."""


@dataclass
class RewardResult:
    """One scored batch of ``N`` completions."""

    total: np.ndarray
    """float64[N]: weighted sum over non-zero-weight rewards (``fallback`` where none applied)."""
    per_reward: dict[str, np.ndarray] = field(default_factory=dict)
    """name -> float64[N], NaN where the reward returned ``None``."""
    faults: dict[str, int] = field(default_factory=dict)
    """name -> samples that used ``fallback``; ``"total"`` -> samples with no applicable reward."""


@dataclass
class _Entry:
    name: str
    reward: Reward
    weight: float
    timeout: float | None


class _Fault(Exception):
    """Internal: a reward problem, raised or warned about by the pipeline."""

    def __init__(self, message: str, indices: Sequence[int]) -> None:
        super().__init__(message)
        self.indices = list(indices)


class RewardPipeline:
    """Score a batch with several named, weighted rewards (one call per reward per batch).

    ``specs`` items may be ``(name, callable, weight)`` tuples (an optional 4th item is a
    timeout in seconds), dicts ``{"name", "weight", "options", "timeout"}``, objects with
    ``.name``/``.weight``/``.options`` (``config.RewardConfig``), bare registered names, or bare
    callables (weight 1). Names and dicts are resolved with ``rftgym.get_reward``.

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
        from ..api import get_reward

        if isinstance(spec, str):
            return _Entry(spec, get_reward(spec), 1.0, self.timeout)
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
        from ..api import get_reward

        if not isinstance(name, str) or not name:
            raise ConfigError(f"reward name must be a non-empty string, got {name!r}")
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(f"options of reward {name!r} must be a mapping, got {type(options).__name__}")
        return _Entry(name, get_reward(name, **dict(options or {})),
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

    def __call__(self, prompts: Sequence[Any] | None, completions: Sequence[Any], **columns: Any) -> RewardResult:
        """Score ``completions`` (with their ``prompts`` and per-sample ``columns``) with every reward."""
        completions = _as_list(completions, "completions")
        n = len(completions)
        prompts = [""] * n if prompts is None else _as_list(prompts, "prompts")
        if len(prompts) != n:
            raise RewardError(f"got {len(prompts)} prompts for {n} completions; pass one prompt per completion")
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
            values, bad = self._score(entry, prompts, completions, columns)
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

    def close(self) -> None:
        """Close every reward (worker pools, models); raise the first failure after trying all."""
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
               columns: dict[str, Any]) -> tuple[np.ndarray, int]:
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
        values = np.full(n, np.nan, dtype=np.float64)
        try:
            raw = _call(entry, kwargs)
            problems = _convert(entry.name, raw, n, values)
        except _Fault as fault:
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


def _call(entry: _Entry, kwargs: dict[str, Any]) -> Any:
    """Call the reward, in a worker thread when it has a timeout."""
    n = len(kwargs["completions"])
    if entry.timeout is None:
        try:
            return entry.reward(**kwargs)
        except Exception as exc:
            raise _Fault(f"reward {entry.name!r} raised {type(exc).__name__}: {exc}", range(n)) from exc
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = entry.reward(**kwargs)
        except BaseException as exc:  # reported to the caller's thread below
            box["error"] = exc

    # A plain daemon thread rather than a ThreadPoolExecutor: executor threads are joined at
    # interpreter exit, so a reward stuck forever would hang shutdown. A Python thread cannot
    # be killed: a timed-out call keeps running in the background until it returns. Rewards
    # that can hang for real (the math checker) enforce hard limits in their own process pool.
    worker = threading.Thread(target=run, name=f"rftgym-reward-{entry.name}", daemon=True)
    worker.start()
    worker.join(entry.timeout)
    if worker.is_alive():
        raise _Fault(f"reward {entry.name!r} timed out after {entry.timeout:g}s", range(n))
    if "error" in box:
        exc = box["error"]
        raise _Fault(f"reward {entry.name!r} raised {type(exc).__name__}: {exc}", range(n)) from exc
    return box.get("value")


def _convert(name: str, raw: Any, n: int, out: np.ndarray) -> list[_Fault]:
    """Fill ``out`` with the reward's values (NaN for None) and describe every bad value."""
    if raw is None or isinstance(raw, (str, bytes, Mapping)) or not hasattr(raw, "__len__") \
            or getattr(raw, "ndim", 1) != 1:
        shape = getattr(raw, "shape", None)
        got = f"{type(raw).__name__} of shape {tuple(shape)}" if shape is not None else type(raw).__name__
        raise _Fault(f"reward {name!r} returned {got}, expected a list of {n} values", range(n))
    if len(raw) != n:
        raise _Fault(f"reward {name!r} returned {len(raw)} values for {n} completions", range(n))
    non_number: list[int] = []
    non_finite: list[int] = []
    example = ""
    for i, value in enumerate(raw):
        if value is None:
            continue
        try:
            if isinstance(value, (str, bytes, complex)):
                raise TypeError
            number = float(value)
        except (TypeError, ValueError):
            if not non_number:
                example = f"{type(value).__name__} {_short(value)}"
            non_number.append(i)
            continue
        if math.isfinite(number):
            out[i] = number
        else:
            non_finite.append(i)
    problems = []
    if non_number:
        problems.append(_Fault(f"reward {name!r} returned a non-number ({example}) for {len(non_number)} of {n} "
                               f"samples at indices {_indices(non_number)}", non_number))
    if non_finite:
        problems.append(_Fault(f"reward {name!r} returned NaN/inf for {len(non_finite)} of {n} samples at "
                               f"indices {_indices(non_finite)}", non_finite))
    return problems


def metrics(result: RewardResult) -> dict[str, float]:
    """Flat metrics for a scored batch.

    ``reward/<name>/mean`` and ``/std`` over the samples where the reward applied (NaN when it
    applied to none: the keys stay the same every step for loggers with fixed columns),
    ``reward/<name>/faults``, ``reward/total/mean|std|faults``.
    """
    out: dict[str, float] = {}
    for name, values in result.per_reward.items():
        out[f"reward/{name}/mean"], out[f"reward/{name}/std"] = _mean_std(values)
        out[f"reward/{name}/faults"] = float(result.faults.get(name, 0))
    out[f"reward/{TOTAL}/mean"], out[f"reward/{TOTAL}/std"] = _mean_std(result.total)
    out[f"reward/{TOTAL}/faults"] = float(result.faults.get(TOTAL, 0))
    return out


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    valid = values[~np.isnan(values)]
    if valid.size == 0:  # np.nanmean would warn "Mean of empty slice"
        return float("nan"), float("nan")
    return float(valid.mean()), float(valid.std())


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


def _indices(indices: list[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, indices[:limit]))
    return f"[{shown}{', ...' if len(indices) > limit else ''}]"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
