"""Batch verification: parent-side prechecks, a verdict cache, and the worker pool.

A GRPO group repeats answers, and a training run repeats (gold, answer) pairs across steps,
so verdicts are cached (LRU) by the cleaned pair. Only pairs the parent cannot decide on its
own (see ``check.precheck``) travel to a worker, each distinct pair once per batch.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Sequence

from .check import CheckOptions, precheck
from .pool import CheckerPool


# Results where no check finished (pool.run / worker.worker_main): scored 0.0 now, but
# a slow or briefly overloaded machine must not turn a right answer into a cached "wrong".
_UNDECIDED = frozenset({"timeout", "worker died", "lost", "memory limit"})


class VerdictCache:
    """A thread-safe LRU map ``key -> bool``."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._data: OrderedDict[tuple, bool] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bool | None:
        """The cached verdict, or None."""
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple, value: bool) -> None:
        """Remember ``value`` for ``key`` (evicting the least recently used entry)."""
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


class MathVerifier:
    """Decide ``gold`` vs extracted-answer pairs: fast path, cache, then limited workers.

    ``timeout`` (seconds) and ``memory_mb`` bound every worker check; ``workers`` defaults to
    the CPUs available, of which ``start_workers`` (default: all) start with the pool and the
    rest when every started one is busy. ``stats`` counts how each pair was decided, and timeouts/crashes.
    """

    def __init__(self, options: CheckOptions | None = None, timeout: float = 5.0, memory_mb: int | None = 2048,
                 workers: int | None = None, cache_size: int = 100_000, start_workers: int | None = None) -> None:
        self.options = options or CheckOptions()
        self.pool = CheckerPool(workers=workers, timeout=timeout, memory_mb=memory_mb, start_workers=start_workers)
        self.cache = VerdictCache(cache_size)
        self._stats = {"fast": 0, "cached": 0, "worker": 0}
        self._lock = threading.Lock()

    @property
    def stats(self) -> dict[str, int]:
        """Counts: decided in the parent (``fast``), from the cache, by a worker; and the pool's
        ``timeouts``, ``crashes`` and ``restarts``."""
        with self._lock:
            out = dict(self._stats)
        out.update(self.pool.stats)
        return out

    def start(self) -> None:
        """Start the worker pool now (otherwise it starts on the first pair that needs it)."""
        self.pool.start()

    def close(self) -> None:
        """Stop the worker pool."""
        self.pool.close()

    def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Verdicts for ``(gold, answer)`` pairs, in order; ``answer`` is already extracted."""
        verdicts: list[bool | None] = [None] * len(pairs)
        todo: dict[tuple, list[int]] = {}
        first_of: dict[tuple[str, str], int] = {}  # a GRPO group repeats its (gold, answer) pairs
        repeats: list[tuple[int, int]] = []
        fast = cached = 0
        for i, (gold, answer) in enumerate(pairs):
            first = first_of.setdefault((gold, answer), i)
            if first != i:
                repeats.append((i, first))
                continue
            prepared = precheck(gold, answer, self.options)
            if prepared.verdict is not None:
                verdicts[i] = prepared.verdict
                fast += 1
                continue
            key = (prepared.gold, prepared.pred)
            hit = self.cache.get(key)
            if hit is not None:
                verdicts[i] = hit
                cached += 1
                continue
            todo.setdefault(key, []).append(i)
        if todo:
            keys = list(todo)
            results = self.pool.run([(g, p, self.options) for g, p in keys])
            for key, (verdict, reason) in zip(keys, results):
                if reason not in _UNDECIDED:
                    self.cache.put(key, verdict)
                for i in todo[key]:
                    verdicts[i] = verdict
        for i, first in repeats:
            verdicts[i] = verdicts[first]
        with self._lock:
            self._stats["fast"] += fast
            self._stats["cached"] += cached + len(repeats) + sum(len(v) - 1 for v in todo.values())
            self._stats["worker"] += len(todo)
        return [bool(v) for v in verdicts]
