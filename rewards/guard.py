"""Calling one reward safely: a timeout thread, and a check of every value it returns."""
from __future__ import annotations

import math
import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np


class RewardFault(Exception):
    """A reward problem at ``indices``, raised or warned about by the pipeline."""

    def __init__(self, message: str, indices: Sequence[int]) -> None:
        super().__init__(message)
        self.indices = list(indices)


def call_reward(name: str, reward: Callable[..., Any], kwargs: dict[str, Any], timeout: float | None) -> Any:
    """Call ``reward(**kwargs)``, in a worker thread when it has a ``timeout``; a failure is a RewardFault."""
    n = len(kwargs["completions"])
    if timeout is None:
        try:
            return reward(**kwargs)
        except Exception as exc:
            raise RewardFault(f"reward {name!r} raised {type(exc).__name__}: {exc}", range(n)) from exc
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = reward(**kwargs)
        except BaseException as exc:  # reported to the caller's thread below
            box["error"] = exc

    # A plain daemon thread rather than a ThreadPoolExecutor: executor threads are joined at
    # interpreter exit, so a reward stuck forever would hang shutdown. A Python thread cannot
    # be killed: a timed-out call keeps running in the background until it returns. Rewards
    # that can hang for real (the math checker) enforce hard limits in their own process pool.
    worker = threading.Thread(target=run, name=f"rftgym-reward-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise RewardFault(f"reward {name!r} timed out after {timeout:g}s", range(n))
    if "error" in box:
        exc = box["error"]
        raise RewardFault(f"reward {name!r} raised {type(exc).__name__}: {exc}", range(n)) from exc
    return box.get("value")


def check_values(name: str, raw: Any, n: int, out: np.ndarray) -> list[RewardFault]:
    """Fill ``out`` with the reward's values (NaN for None) and describe every bad value."""
    if raw is None or isinstance(raw, (str, bytes, Mapping)) or not hasattr(raw, "__len__") \
            or getattr(raw, "ndim", 1) != 1:
        shape = getattr(raw, "shape", None)
        got = f"{type(raw).__name__} of shape {tuple(shape)}" if shape is not None else type(raw).__name__
        raise RewardFault(f"reward {name!r} returned {got}, expected a list of {n} values", range(n))
    if len(raw) != n:
        raise RewardFault(f"reward {name!r} returned {len(raw)} values for {n} completions", range(n))
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
        problems.append(RewardFault(f"reward {name!r} returned a non-number ({example}) for {len(non_number)} of {n} "
                               f"samples at indices {_indices(non_number)}", non_number))
    if non_finite:
        problems.append(RewardFault(f"reward {name!r} returned NaN/inf for {len(non_finite)} of {n} samples at "
                               f"indices {_indices(non_finite)}", non_finite))
    return problems


def _indices(indices: list[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, indices[:limit]))
    return f"[{shown}{', ...' if len(indices) > limit else ''}]"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
