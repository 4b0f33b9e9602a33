"""The ``reasoning_gym`` reward: each row scored by its reasoning-gym task's own ``score_answer``.

Rows come from ``rftgym/ReasoningGym-v0`` (columns ``rg_task`` and ``rg_entry``). The answer
is the text inside the last ``<answer>…</answer>`` of the completion (``extract="answer_tag"``,
the reasoning-gym convention) or the whole stripped completion (``extract=None``); partial
credit is kept as the task defines it. Scoring is reasoning-gym's own Python on strings, in
this process: it never evaluates the completion.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..envs.tasks.reasoning_gym import import_reasoning_gym
from ..errors import ConfigError
from .format import completion_text


def _answer_tag(text: str) -> str | None:
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    return text[start + len("<answer>"):end].strip() if start >= 0 else None


class ReasoningGymReward:
    """The task's ``score_answer(answer, entry)`` in [0, 1]; no answer scores 0.0; rows without
    a reasoning-gym entry are not applicable (None)."""

    def __init__(self, extract: str | None = "answer_tag") -> None:
        if extract not in ("answer_tag", None):
            raise ConfigError(f"reasoning_gym reward: extract must be 'answer_tag' or None, got {extract!r}")
        self.extract = extract
        self._scorers: dict[str, Any] = {}

    def setup(self) -> None:
        """Import reasoning-gym (one clear line when the extra is missing)."""
        import_reasoning_gym()

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        if "rg_entry" not in columns:
            raise ConfigError("reasoning_gym reward needs the column 'rg_entry' (rows of rftgym/ReasoningGym-v0); "
                              f"columns given: {', '.join(sorted(columns)) or '(none)'}")
        entries = columns["rg_entry"]
        names = columns.get("rg_task") or [None] * len(completions)
        out: list[float | None] = []
        for completion, entry, name in zip(completions, entries, names):
            if not entry:
                out.append(None)
                continue
            text = completion_text(completion)
            answer = _answer_tag(text) if self.extract == "answer_tag" else text.strip()
            if answer is None:
                out.append(0.0)
                continue
            name = name or entry.get("metadata", {}).get("source_dataset")
            out.append(self.score(name, answer, entry))
        return out

    def score(self, name: str, answer: str, entry: dict) -> float:
        """The task's own score, clipped to [0, 1]; a scorer that raises counts as 0.0."""
        if name not in self._scorers:
            self._scorers[name] = import_reasoning_gym().get_score_answer_fn(name)
        try:
            value = float(self._scorers[name](answer, entry))
        except Exception:  # noqa: BLE001 - reasoning-gym scorers raise on malformed answers
            return 0.0
        return min(1.0, max(0.0, value)) if value == value else 0.0
