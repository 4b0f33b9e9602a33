"""A text space that accepts any string up to a length (Gymnasium's ``Text`` defaults to alphanumerics)."""
from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium import spaces

# Sampling draws from printable ASCII; membership accepts any Unicode string of a valid length,
# because prompts and completions contain "+", "=", spaces, newlines and non-Latin text.
_SAMPLE_CHARSET = string.printable
_SAMPLE_MAX = 64  # random samples stay short: they only exercise the env (check_env, smoke tests)


class AnyText(spaces.Text):
    """Every ``str`` of ``min_length``..``max_length`` characters (any characters at all).

    ``sample()`` without a mask draws printable ASCII of at most 64 characters, since the
    maximum here is a sanity bound rather than a typical length.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None) -> None:
        super().__init__(max_length=max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        """True for any string whose length lies within the bounds."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random printable string (short unless ``mask`` fixes the length)."""
        if mask is None and probability is None:
            high = max(self.min_length, min(self.max_length, _SAMPLE_MAX))
            length = int(self.np_random.integers(self.min_length, high + 1))
            chars = self.np_random.choice(np.array(self.character_list), size=length)
            return "".join(chars.tolist())
        return super().sample(mask=mask, probability=probability)

    def __repr__(self) -> str:
        return f"AnyText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyText) and (self.min_length, self.max_length) == (other.min_length, other.max_length)

    def __hash__(self) -> int:
        return hash(("AnyText", self.min_length, self.max_length))
