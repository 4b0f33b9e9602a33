"""The ``brevity`` reward: a correct answer scores higher the shorter the completion is."""
from __future__ import annotations

from typing import Any, Sequence


class BrevityReward:
    """1.0 for a completion that is exactly the gold answer; a correct answer with extra text
    scores ``1 / (1 + extra_chars / scale)``; a wrong one 0.0; no gold answer: ``None``.

    "Correct" means the gold answer appears in the completion as a whole word (so ``"1"`` is not
    found inside ``"10"``). Options (``get_reward("brevity", scale=...)`` or ``options:`` in a
    run config): ``scale``, the extra characters that halve the reward.
    """

    def __init__(self, scale: float = 10.0) -> None:
        if not scale > 0:
            raise ValueError(f"brevity: scale must be > 0, got {scale!r}")
        self.scale = float(scale)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], answer: Sequence[Any] | None = None,
                 **columns: Any) -> list[float | None]:
        if answer is None:  # data without a gold answer: not applicable
            return [None] * len(completions)
        return [self.score(c, a) for c, a in zip(completions, answer)]

    def score(self, completion: str, gold: Any) -> float | None:
        """The reward of one completion against its gold answer."""
        if gold is None:
            return None
        gold, text = str(gold).strip(), completion.strip()
        if gold not in text.split():
            return 0.0
        extra = len(text) - len(gold)
        return 1.0 / (1.0 + extra / self.scale)
