"""A scored batch (:class:`RewardResult`) and its metrics: the one place reward metrics are made."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

TOTAL = "total"
"""Key of ``faults`` (and of the ``reward/total/...`` metrics) for the summed reward."""


@dataclass
class RewardResult:
    """One scored batch of ``N`` completions."""

    total: np.ndarray
    """float64[N]: weighted sum over non-zero-weight rewards (``fallback`` where none applied)."""
    per_reward: dict[str, np.ndarray] = field(default_factory=dict)
    """name -> float64[N], NaN where the reward returned ``None``."""
    faults: dict[str, int] = field(default_factory=dict)
    """name -> samples that used ``fallback``; ``"total"`` -> samples with no applicable reward."""


    @classmethod
    def concat(cls, results: Sequence["RewardResult"]) -> "RewardResult":
        """One result for several batches of the same rewards (e.g. a step's refills)."""
        names = dict.fromkeys(n for r in results for n in r.per_reward)
        faults: dict[str, int] = {}
        for r in results:
            for name, count in r.faults.items():
                faults[name] = faults.get(name, 0) + int(count)
        return cls(total=np.concatenate([np.asarray(r.total, dtype=np.float64) for r in results]),
                   per_reward={n: np.concatenate([np.asarray(r.per_reward[n], dtype=np.float64)
                                                  for r in results if n in r.per_reward]) for n in names},
                   faults=faults)


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
