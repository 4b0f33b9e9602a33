"""``rftgym/ToolArithmetic-v0``: products a small model cannot do in its head, with a calculator.

Each episode is one problem ``a*b=`` (a 3-digit times a 2-digit number by default). The model
may call the calculator (``<tool>calc(a*b)</tool>``, answered ``<result>…</result>``) and
then answers ``answer N``; the episode ends with reward 1 when N is the product, else 0.
Train and test problems are disjoint (a hash of the problem picks its split).

:func:`demonstration` writes the episodes the embedded tool model was trained on: the
demonstrator calls the tool only some of the time and otherwise guesses, so RL has something to
learn — calling the tool.
"""
from __future__ import annotations

import re
from typing import Any

import gymnasium
import numpy as np

from ..spaces import AnyText
from ..tools.calculator import calc
from ..tools.calls import TAG, ToolRunner

SPLITS = ("train", "test")
_LAST_INT = re.compile(r"-?\d+")


def split_of(a: int, b: int) -> str:
    """Every tenth problem (by a fixed hash) is held out."""
    return "test" if (a * 7919 + b * 104729) % 10 == 0 else "train"


def draw_problem(rng: np.random.Generator, split: str, digits: tuple[int, int] = (3, 2)) -> tuple[int, int]:
    """A problem ``(a, b)`` of ``split`` with the given digit counts."""
    while True:
        a = int(rng.integers(10 ** (digits[0] - 1), 10 ** digits[0]))
        b = int(rng.integers(10 ** (digits[1] - 1), 10 ** digits[1]))
        if split_of(a, b) == split:
            return a, b


def final_answer(text: str) -> int | None:
    """The last integer the completion writes (None without one)."""
    found = _LAST_INT.findall(text)
    return int(found[-1]) if found else None


class ToolArithmeticEnv(gymnasium.Env):
    """A multi-turn env: problem → (tool call → result)* → answer; reward 1 for the right product.

    ``info["correct"]`` is set on the final step; ``info["tool_calls"]`` counts the calls.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, split: str = "train", digits: tuple[int, int] | list[int] = (3, 2), max_calls: int = 2,
                 timeout: float = 2.0, render_mode: str | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if len(digits) != 2 or not all(isinstance(d, int) and 1 <= d <= 6 for d in digits):
            raise ValueError(f"digits must be two integers in 1..6, got {digits!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.split, self.digits, self.max_calls = split, tuple(digits), int(max_calls)
        self.render_mode = render_mode
        self.runner = ToolRunner([calc], TAG, timeout)
        self.observation_space = AnyText(4096)
        self.action_space = AnyText(4096)
        self.problem: tuple[int, int] = (0, 0)
        self.calls = 0
        self._log: list[str] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self.problem = draw_problem(self.np_random, self.split, self.digits)
        self.calls = 0
        prompt = f"{self.problem[0]}*{self.problem[1]}="
        self._log = [prompt]
        return prompt, {"answer": str(self.problem[0] * self.problem[1])}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        call = self.runner.find(action) if self.calls < self.max_calls else None
        self._log.append(action)
        if call is not None:
            self.calls += 1
            result, _ = self.runner.run(call)
            obs = self.runner.observation(result)
            self._log.append(obs)
            return obs, 0.0, False, False, {"tool_calls": self.calls}
        correct = final_answer(action) == self.problem[0] * self.problem[1]
        return "", float(correct), True, False, {"correct": correct, "tool_calls": self.calls}

    def render(self) -> str | None:
        """``ansi``: the episode's transcript so far."""
        return "".join(self._log) + "\n" if self.render_mode == "ansi" else None


def demonstration(rng: np.random.Generator, p_tool: float, split: str = "train",
                  digits: tuple[int, int] = (3, 2)) -> list[tuple[str, bool]]:
    """One demonstrated episode as ``(text, written_by_model)`` segments.

    With probability ``p_tool`` the demonstrator calls the calculator and copies its result;
    otherwise it guesses: the product's leading digits right, the last two at random.
    """
    a, b = draw_problem(rng, split, digits)
    prompt, product = f"{a}*{b}=", a * b
    if rng.random() < p_tool:
        return [(prompt, False), (f"<tool>calc({a}*{b})</tool>", True), (f"<result>{product}</result>", False),
                (f"answer {product}", True)]
    guess = max(0, product - product % 100 + int(rng.integers(0, 100)))
    return [(prompt, False), (f"answer {guess}", True)]
