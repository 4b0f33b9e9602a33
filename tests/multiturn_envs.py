"""Multi-turn envs written the way a user would: plain ``gymnasium.Env`` subclasses, no rftgym import."""
from __future__ import annotations

import re

import gymnasium
from gymnasium import spaces

TEXT = spaces.Text(max_length=4096, charset="".join(chr(c) for c in range(32, 127)) + "\n")


class GuessNumberEnv(gymnasium.Env):
    """Guess a number in 1..9: the env answers "higher"/"lower"; 3 guesses; reward 1 when found."""

    metadata = {"render_modes": []}

    def __init__(self, max_guesses: int = 3, high: int = 9) -> None:
        self.observation_space = TEXT
        self.action_space = TEXT
        self.max_guesses, self.high = max_guesses, high
        self.secret = 1
        self.guesses = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.secret = int(self.np_random.integers(1, self.high + 1))
        self.guesses = 0
        return f"guess 1-{self.high}:", {}

    def step(self, action):
        self.guesses += 1
        found = re.search(r"\d", action)
        guess = int(found.group()) if found else 0
        if guess == self.secret:
            return " correct\n", 1.0, True, False, {"correct": True}
        if self.guesses >= self.max_guesses:
            return " out of guesses\n", 0.0, True, False, {"correct": False}
        return (" higher\n" if guess < self.secret else " lower\n"), 0.0, False, False, {}


class _Bad(GuessNumberEnv):
    def __init__(self, kind: str = "non_string", **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def step(self, action):
        if self.kind == "raises":
            raise ValueError("the env broke")
        if self.kind == "non_string":
            return 42, 0.0, False, False, {}
        if self.kind == "never_ends":
            return " again\n", 0.0, False, False, {}
        if self.kind == "huge_reply":
            return "x" * 5000, 0.0, False, False, {}
        if self.kind == "nan_reward":
            return " ok\n", float("nan"), True, False, {}
        raise AssertionError(self.kind)


def BadEnv(kind: str = "non_string", max_guesses: int = 3):
    """Entry point of the misbehaving env (``kind`` picks the fault)."""
    return _Bad(kind=kind, max_guesses=max_guesses)


def register(prefix: str = "UserTest") -> tuple[str, str]:
    """Register the guess-the-number and the bad env in-process with ``gymnasium.register``."""
    guess, bad = f"{prefix}/GuessNumber-v0", f"{prefix}/BadEnv-v0"
    if guess not in gymnasium.registry:
        gymnasium.register(guess, entry_point=GuessNumberEnv)
        gymnasium.register(bad, entry_point=BadEnv)
    return guess, bad
