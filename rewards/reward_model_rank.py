"""The ``reward_model_rank`` group reward: a Bradley–Terry reward model judging a group against itself.

A Bradley–Terry model says how likely completion i is preferred to completion j of the same
prompt: P(i ≻ j) = σ(r_i − r_j). Scoring each completion by its **mean pairwise win
probability** within its group,

    R_i = 1/(G−1) Σ_{j≠i} σ((r_i − r_j) / τ),

turns the reward model's scale-free scores into a bounded, group-relative reward in (0, 1)
(a group's scores average to exactly 0.5): what the model's raw score means in absolute
terms no longer matters, only which completion of the group it prefers and by how much. A
group of one scores 0.5. Registered with ``group=True``, so the pipeline calls it with one
prompt's G completions at a time.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import RftgymError
from .reward_model import RewardModelReward


def pairwise_win_rate(scores: Sequence[float], temperature: float = 1.0) -> np.ndarray:
    """``R_i = mean_{j≠i} σ((s_i − s_j) / temperature)`` for one group (float64 [G]); 0.5 when G = 1."""
    s = np.asarray(scores, dtype=np.float64)
    g = s.size
    if g <= 1:
        return np.full(g, 0.5)
    diff = (s[:, None] - s[None, :]) / temperature           # [G, G], diff[i, j] = s_i − s_j
    win = 0.5 * (1.0 + np.tanh(0.5 * diff))                  # σ(x), without overflow for large |x|
    np.fill_diagonal(win, 0.0)
    return win.sum(axis=1) / (g - 1)


class RewardModelRankReward:
    """Mean pairwise win probability of each completion within its group under a reward model.

    Options are those of ``reward_model`` that concern scoring (``path`` — required —,
    ``batch_size``, ``device``, ``max_length``, ``chat_template``) plus ``temperature`` τ
    (larger: softer preferences). The model is loaded once, on first use.
    """

    def __init__(self, path: str, temperature: float = 1.0, batch_size: int = 64, device: str = "auto",
                 max_length: int = 512, chat_template: bool = False) -> None:
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            raise RftgymError(f"reward_model_rank: temperature must be a number > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.model = RewardModelReward(path, batch_size=batch_size, device=device, max_length=max_length,
                                       chat_template=chat_template)

    def setup(self) -> None:
        """Load the reward model (the reward wrapper calls this on first use)."""
        self.model.setup()

    def close(self) -> None:
        """Drop the reward model."""
        self.model.close()

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        """One group (one prompt's completions) in, one win rate per completion out."""
        raw = self.model.score(prompts, completions)
        return [float(v) for v in pairwise_win_rate(raw, self.temperature)]

    def __repr__(self) -> str:
        return f"RewardModelRankReward(path={self.model.path!r}, temperature={self.temperature})"
