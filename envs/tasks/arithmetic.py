"""Procedural arithmetic problems, deterministic by seed, with a disjoint held-out split.

A problem belongs to the test split by a hash of its text, not by the seed, so train and test
never overlap whatever seeds or sizes are used. Prompts look like ``"37+45="`` and the answer
is the bare result (``"82"``), which suits a character-level model.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _is_test(text: str, test_percent: int) -> bool:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 100 < test_percent


@dataclass
class ArithmeticTask:
    """``digits``-digit operands, operators from ``ops``; ``test_percent`` of all problems are held out."""

    digits: int = 2
    ops: Sequence[str] = ("+",)
    split: str = "train"
    test_percent: int = 10
    min_digits: int = 1

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"arithmetic split must be 'train' or 'test', got {self.split!r}")
        if not 1 <= self.digits <= 9:
            raise ValueError(f"arithmetic digits must be in 1..9, got {self.digits!r}")
        if not 1 <= self.min_digits <= self.digits:
            raise ValueError(f"arithmetic min_digits must be in 1..digits, got {self.min_digits!r}")
        bad = [op for op in self.ops if op not in OPERATORS]
        if bad or not self.ops:
            raise ValueError(f"arithmetic ops must be a non-empty subset of {sorted(OPERATORS)}, got {list(self.ops)!r}")
        if not 1 <= self.test_percent <= 50:
            raise ValueError(f"arithmetic test_percent must be in 1..50, got {self.test_percent!r}")
        self.ops = tuple(self.ops)
        self._low = 0 if self.min_digits == 1 else 10 ** (self.min_digits - 1)
        self._high = 10 ** self.digits  # exclusive

    def problem(self, a: int, op: str, b: int) -> dict:
        """The row for ``a op b``: prompt, answer and the operands as metadata."""
        return {"prompt": f"{a}{op}{b}=", "answer": str(OPERATORS[op](a, b)), "a": a, "b": b, "op": op}

    def in_split(self, row: dict) -> bool:
        return _is_test(row["prompt"], self.test_percent) == (self.split == "test")

    def sample(self, rng: np.random.Generator) -> dict:
        """One problem of this split drawn with ``rng`` (rejection sampling on the split hash)."""
        while True:
            a, b = (int(x) for x in rng.integers(self._low, self._high, size=2))
            op = self.ops[int(rng.integers(len(self.ops)))] if len(self.ops) > 1 else self.ops[0]
            row = self.problem(a, op, b)
            if self.in_split(row):
                return row

    def __iter__(self) -> Iterator[dict]:
        """Every problem of this split in a fixed pseudo-random order (for evaluation)."""
        rng = np.random.default_rng(12345)
        a_values = rng.permutation(np.arange(self._low, self._high))
        b_values = rng.permutation(np.arange(self._low, self._high))
        n = len(a_values)
        for k in range(n * n):  # a diagonal walk mixes both operands early in the order
            i, j = k % n, (k // n + k) % n
            for op in self.ops:
                row = self.problem(int(a_values[i]), op, int(b_values[j]))
                if self.in_split(row):
                    yield row

    def rows(self, limit: int | None = None) -> list[dict]:
        """The first ``limit`` problems of this split in the fixed order."""
        out = []
        for row in self:
            out.append(row)
            if limit is not None and len(out) >= limit:
                break
        return out
