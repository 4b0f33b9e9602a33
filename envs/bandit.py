"""``PromptBanditEnv``: one prompt is one single-step Gymnasium bandit episode."""
from __future__ import annotations

import copy
from typing import Any

import gymnasium
import numpy as np
from gymnasium.error import ResetNeeded

from .loading import DataError
from .scoring import Scorer, check_completions
from .source_kwargs import build_source
from .sources import PromptSource, Row
from .spaces import AnyText

MAX_CHARS = 1 << 16  # default bound of the text spaces (a sanity limit, not a typical length)


class DrawCursor:
    """Draws rows and remembers the RNG and data position from just before the latest draw.

    Saving that snapshot (not the position after it) lets a resumed env re-draw the pending
    prompts, so a resumed run sees exactly the prompts an uninterrupted one would.
    """

    def __init__(self, source: PromptSource, max_prompt_chars: int) -> None:
        self.source, self.max_prompt_chars = source, max_prompt_chars
        self.snapshot: dict[str, Any] | None = None

    def draw(self, rng: np.random.Generator, k: int) -> list[Row]:
        self.snapshot = {"rng": rng.bit_generator.state, "source": copy.deepcopy(self.source.state_dict())}
        rows = self.source.draw(rng, k)
        for row in rows:
            if len(row.prompt) > self.max_prompt_chars:
                raise DataError(f"a prompt has {len(row.prompt)} characters, more than max_prompt_chars={self.max_prompt_chars}")
        return rows

    def state_dict(self, rng: np.random.Generator) -> dict[str, Any]:
        if self.snapshot is None:
            return {"version": 1, "pending": False, "rng": rng.bit_generator.state,
                    "source": copy.deepcopy(self.source.state_dict())}
        return {"version": 1, "pending": True, **copy.deepcopy(self.snapshot)}

    def load_state_dict(self, state: dict[str, Any]) -> np.random.Generator:
        """Restore the position; returns the restored RNG (the env's new ``np_random``)."""
        if state.get("version") != 1:
            raise DataError(f"unsupported env state version {state.get('version')!r}")
        rng = np.random.Generator(np.random.PCG64())
        rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.source.load_state_dict(copy.deepcopy(state["source"]))
        self.snapshot = None
        return rng


class PromptBanditEnv(gymnasium.Env):
    """A prompt source plus a reward as a one-step Gymnasium env.

    ``reset()`` draws a prompt with ``self.np_random`` (observation: the prompt text);
    ``step(completion)`` scores it and returns ``(prompt, reward, True, False, info)`` with
    ``info["per_reward"]`` (name → value, NaN for "not applicable"), ``info["faults"]``,
    ``info["correct"]`` (bool, or None without a check) and ``info["row"]`` (the row's columns).
    Keyword arguments: ``reward``, ``check`` and the source arguments of
    :func:`rftgym.envs.source_kwargs.build_source`.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, *, reward: Any = None, check: Any = "auto", reward_resolver: Any = None,
                 render_mode: str | None = None,
                 max_prompt_chars: int = MAX_CHARS, max_completion_chars: int = MAX_CHARS, **source_kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.source = build_source(**source_kwargs)
        # The system turn for whoever applies the chat template: the source does when the env
        # has ``chat_template=True``; otherwise the runner hands it to the policy.
        self.system_prompt: str | None = source_kwargs.get("system_prompt")
        self.scorer = Scorer(reward, check, self.source.default_reward, self.source.checker, reward_resolver)
        self.observation_space = AnyText(max_prompt_chars)
        self.action_space = AnyText(max_completion_chars)
        self._cursor = DrawCursor(self.source, max_prompt_chars)
        self._row: Row | None = None
        self._last: tuple[str, float] | None = None
        self._restored = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Draw the next prompt (a seeded reset restarts the data order too)."""
        super().reset(seed=seed)
        if seed is not None:
            self.source.restart()
        if not (self._restored and seed is None):
            self._row = self._cursor.draw(self.np_random, 1)[0]
        self._restored, self._last = False, None
        return self._row.prompt, {"row": copy.deepcopy(self._row.columns)}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Score ``action`` (the completion text) against the current prompt."""
        if self._row is None:
            raise ResetNeeded("call reset() before step()")
        (completion,) = check_completions([action], 1)
        row = self._row
        columns = {k: [copy.deepcopy(v)] for k, v in row.columns.items()}
        total, per_reward, faults, correct = self.scorer([row.prompt], [completion], columns)
        self.source.record([row], correct, total)
        reward = float(total[0])
        self._last = (completion, reward)
        info = {"per_reward": {k: float(v[0]) for k, v in per_reward.items()}, "faults": dict(faults),
                "correct": None if correct is None else bool(correct[0]), "row": copy.deepcopy(row.columns)}
        # The episode is over: a state saved from here on is the position after this prompt
        # (pending=False), so a resumed env's next reset() draws the next prompt, not this one.
        self._cursor.snapshot = None
        return row.prompt, reward, True, False, info

    def render(self) -> str | None:
        """``ansi``: the last prompt, completion and reward as text."""
        if self.render_mode != "ansi":
            return None
        prompt = self._row.prompt if self._row is not None else ""
        if self._last is None:
            return f"prompt: {prompt}\n"
        return f"prompt: {prompt}\ncompletion: {self._last[0]}\nreward: {self._last[1]:g}\n"

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable data position and RNG state (see :class:`DrawCursor`)."""
        return self._cursor.state_dict(self.np_random)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the next ``reset()`` without a seed returns the same prompt
        the saved env was showing."""
        self._np_random = self._cursor.load_state_dict(state)
        self._row, self._restored = None, False
        if state["pending"]:
            self._row, self._restored = self._cursor.draw(self._np_random, 1)[0], True

    def close(self) -> None:
        """Release the rewards' resources (idempotent)."""
        self.scorer.close()
