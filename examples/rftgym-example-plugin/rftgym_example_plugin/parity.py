"""``rftgym_example/Parity-v0``: "is the number of 1s in this bit string odd?", answered 0 or 1.

A procedural task is any object with ``sample(rng) -> row`` and an ordered ``__iter__`` (for
evaluation), where a row is a dict with ``prompt``, ``answer`` and any metadata columns.
rftgym's :class:`~rftgym.envs.bandit.PromptBanditEnv` and
:class:`~rftgym.envs.vector.PromptBanditVectorEnv` take it as ``task=`` and do the rest
(seeding, groups, scoring with the reward pipeline, resumable data position). The two
subclasses below only turn the env's keyword arguments into the task.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from rftgym.envs.bandit import PromptBanditEnv
from rftgym.envs.vector import PromptBanditVectorEnv


def _is_test(bits: str, test_percent: int) -> bool:
    # Split by a hash of the problem, not by the seed: train and test never overlap.
    digest = hashlib.blake2b(bits.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 100 < test_percent


@dataclass
class ParityTask:
    """Bit strings of ``n_bits``; ``test_percent`` of them form the held-out ``test`` split."""

    n_bits: int = 6
    split: str = "train"
    test_percent: int = 20

    # What the env uses when the run names no reward / check (rftgym reads these attributes).
    default_reward = "exact_match"
    checker = "exact_match"

    def __post_init__(self) -> None:
        if not 2 <= self.n_bits <= 20:
            raise ValueError(f"parity n_bits must be in 2..20, got {self.n_bits!r}")
        if self.split not in ("train", "test"):
            raise ValueError(f"parity split must be 'train' or 'test', got {self.split!r}")

    def problem(self, bits: str) -> dict[str, Any]:
        return {"prompt": f"parity {bits}=", "answer": str(bits.count("1") % 2), "bits": bits}

    def _in_split(self, bits: str) -> bool:
        return _is_test(bits, self.test_percent) == (self.split == "test")

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One problem of this split drawn with the env's ``rng`` (rejection on the split hash)."""
        while True:
            bits = "".join(str(b) for b in rng.integers(0, 2, size=self.n_bits))
            if self._in_split(bits):
                return self.problem(bits)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every problem of this split in a fixed order (what sequential evaluation reads)."""
        for k in range(2 ** self.n_bits):
            bits = format(k, f"0{self.n_bits}b")
            if self._in_split(bits):
                yield self.problem(bits)


class ParityEnv(PromptBanditEnv):
    """One parity prompt per episode; keyword arguments as :class:`PromptBanditEnv` plus the task's."""

    def __init__(self, *, n_bits: int = 6, split: str = "train", test_percent: int = 20, **kwargs: Any) -> None:
        super().__init__(task=ParityTask(n_bits=n_bits, split=split, test_percent=test_percent), **kwargs)


class ParityVectorEnv(PromptBanditVectorEnv):
    """The natively batched version (``gymnasium.make_vec(..., group_size=G)``)."""

    def __init__(self, num_envs: int, group_size: int = 1, *, n_bits: int = 6, split: str = "train",
                 test_percent: int = 20, **kwargs: Any) -> None:
        super().__init__(num_envs, group_size,
                         task=ParityTask(n_bits=n_bits, split=split, test_percent=test_percent), **kwargs)
