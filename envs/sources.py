"""Prompt sources: procedural tasks and datasets, drawn in random or sequential order.

A source turns raw rows into :class:`Row` s (formatted prompt, gold answer, the columns given
to rewards) and keeps a JSON-serialisable data position; the RNG belongs to the env, which
passes its ``np_random`` to :meth:`PromptSource.draw`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, closest
from ..answers import ANSWER_FORMATS, extract_answer
from .formatting import Formatter  # noqa: F401  (re-exported: part of this module's surface)
from .loading import DataError

ORDERS = ("random", "sequential")


@dataclass
class Row:
    """One prompt: the text shown to the policy, the gold answer, and the columns for rewards."""

    prompt: str
    answer: str | None
    columns: dict[str, Any] = field(default_factory=dict)
    key: int | None = None
    """The row's index in a curriculum's pool (envs/curriculum.py); None without a curriculum."""


class PromptSource:
    """Base of the sources: ``draw(rng, k)`` the next ``k`` rows; a position that can be saved."""

    default_reward: str | None = "math"
    checker: str | None = "math"

    def draw(self, rng: np.random.Generator, k: int) -> list[Row]:
        raise NotImplementedError

    def restart(self) -> None:
        """Back to the beginning (a seeded reset)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`."""

    def record(self, rows: list[Row], correct: np.ndarray | None, total: np.ndarray) -> None:
        """Learn from a scored batch (``rows[i]`` got ``total[i]``; a curriculum counts passes)."""

    def metrics(self) -> dict[str, float]:
        """Metrics the runner logs each step (a curriculum's ``curriculum/*``)."""
        return {}


class _Position:
    """Epoch/position bookkeeping over ``n`` items, shuffled per epoch or in order."""

    def __init__(self, n: int, order: str) -> None:
        self.n, self.order = n, order
        self.restart()

    def restart(self) -> None:
        self.epoch, self.pos, self.epoch_seed, self._perm = 0, 0, None, None

    def next(self, rng: np.random.Generator) -> int:
        if self.pos >= self.n:
            self.epoch, self.pos, self.epoch_seed, self._perm = self.epoch + 1, 0, None, None
        if self.order == "random" and self._perm is None:
            # one seed per epoch (drawn from the env's RNG) keeps the saved state tiny
            self.epoch_seed = int(rng.integers(2**32))
            self._perm = np.random.default_rng(self.epoch_seed).permutation(self.n)
        index = int(self._perm[self.pos]) if self.order == "random" else self.pos
        self.pos += 1
        return index

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "epoch_seed": self.epoch_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.pos, self.epoch_seed = int(state["epoch"]), int(state["pos"]), state["epoch_seed"]
        self._perm = (np.random.default_rng(self.epoch_seed).permutation(self.n)
                      if self.order == "random" and self.epoch_seed is not None else None)


class TaskSource(PromptSource):
    """A procedural task (``sample(rng) -> row dict`` and an ordered ``__iter__``)."""

    def __init__(self, task: Any, order: str, formatter: Formatter, default_reward: str | None,
                 checker: str | None) -> None:
        self.task, self.order, self.formatter = task, order, formatter
        self.default_reward, self.checker = default_reward, checker
        self.restart()

    def restart(self) -> None:
        self.epoch, self.pos, self._iter = 0, 0, None

    def _row(self, raw: dict) -> Row:
        columns = {k: v for k, v in raw.items() if k != "prompt"}
        return Row(self.formatter(raw["prompt"], raw), None if raw.get("answer") is None else str(raw["answer"]), columns)

    def _next_in_order(self) -> dict:
        if self._iter is None:
            self._iter = iter(self.task)
            for _ in range(self.pos):  # resume: replay the fixed order up to the saved position
                next(self._iter)
        try:
            raw = next(self._iter)
        except StopIteration:
            self.epoch, self.pos, self._iter = self.epoch + 1, 0, iter(self.task)
            raw = next(self._iter, None)
            if raw is None:
                raise DataError("the task produced no problems for this split") from None
        self.pos += 1
        return raw

    def draw(self, rng: np.random.Generator, k: int) -> list[Row]:
        if self.order == "sequential":
            return [self._row(self._next_in_order()) for _ in range(k)]
        rows: list[dict] = []
        seen: set[str] = set()
        attempts = 0
        while len(rows) < k:
            raw = self.task.sample(rng)
            attempts += 1
            # distinct prompts within a batch (GRPO groups must differ), unless the task is too small
            if raw["prompt"] in seen and attempts < 50 * k:
                continue
            seen.add(raw["prompt"])
            rows.append(raw)
        return [self._row(raw) for raw in rows]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.pos, self._iter = int(state["epoch"]), int(state["pos"]), None


class _RowMapper:
    """Column mapping, answer extraction and formatting shared by tables and streams."""

    def __init__(self, prompt_column: str, answer_column: str | None, columns: Sequence[str] | None,
                 answer_format: str, formatter: Formatter) -> None:
        if answer_format not in ANSWER_FORMATS:
            raise ConfigError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}, got {answer_format!r}")
        self.prompt_column, self.answer_column = prompt_column, answer_column
        self.columns = None if columns is None else list(columns)
        self.answer_format, self.formatter = answer_format, formatter

    def check_columns(self, found: Sequence[str]) -> None:
        """Error naming a missing column and listing the columns found."""
        needed = [("prompt_column", self.prompt_column)]
        if self.answer_column is not None:
            needed.append(("answer_column", self.answer_column))
        needed += [("columns", c) for c in self.columns or ()]
        for what, column in needed:
            if column not in found:
                hint = closest(column, found)
                did = f" (did you mean {hint!r}?)" if hint else ""
                extra = "; set answer_column: null (--set env.kwargs.answer_column=null) for data without answers" if what == "answer_column" else ""
                raise DataError(f"{what} {column!r} not found{did}; columns found: {', '.join(found) or '(none)'}{extra}")

    def describe(self) -> str:
        """The columns read, for messages: ``prompt_column='q', answer_column='a'``."""
        text = f"prompt_column={self.prompt_column!r}"
        return text + (f", answer_column={self.answer_column!r}" if self.answer_column is not None else "")

    def valid_prompt(self, prompt: Any) -> bool:
        if prompt is None:
            return False
        if isinstance(prompt, list):
            return len(prompt) > 0
        return bool(str(prompt).strip())

    def answer(self, value: Any) -> str | None:
        """The extracted gold answer, or None when the row has none (the row is then skipped)."""
        if value is None or isinstance(value, float) and value != value:  # None or NaN (csv gaps)
            return None
        text = str(value)
        return extract_answer(text, self.answer_format) if text.strip() else None

    def row(self, raw: dict, answer: str | None) -> Row:
        names = self.columns if self.columns is not None else [
            c for c in raw if c not in (self.prompt_column, self.answer_column)]
        columns = {c: raw.get(c) for c in names}
        if self.answer_column is not None:
            columns["answer"] = answer  # the gold answer is always the column "answer"
        return Row(self.formatter(raw[self.prompt_column], raw), answer, columns)


class TableSource(PromptSource):
    """A map-style ``datasets.Dataset`` or a list of dicts; invalid rows are skipped up front."""

    def __init__(self, table: Any, mapper: _RowMapper, order: str) -> None:
        self.table, self.mapper = table, mapper
        if isinstance(table, list):
            found = list(dict.fromkeys(k for row in table for k in row))
            prompts = [row.get(mapper.prompt_column) for row in table]
        else:
            found = list(table.column_names)
        if len(table) == 0:
            raise DataError("the dataset is empty (0 rows)")
        mapper.check_columns(found)
        if not isinstance(table, list):
            prompts = table[mapper.prompt_column]
        if mapper.answer_column is None:
            answers = [None] * len(table)
        elif isinstance(table, list):
            answers = [mapper.answer(row.get(mapper.answer_column)) for row in table]
        else:
            answers = [mapper.answer(a) for a in table[mapper.answer_column]]
        self.indices = [i for i, (p, a) in enumerate(zip(prompts, answers))
                        if mapper.valid_prompt(p) and (mapper.answer_column is None or a is not None)]
        self.answers = answers
        self.skipped = len(table) - len(self.indices)
        if not self.indices:
            raise DataError(f"the dataset has no usable rows: all {len(table)} have an empty prompt or answer "
                            f"({mapper.describe()})")
        if self.skipped:
            warnings.warn(f"skipped {self.skipped} of {len(table)} rows with a missing or empty prompt or answer",
                          stacklevel=4)
        # without answers there is nothing for math to check: the reward must be given
        self.default_reward = self.checker = "math" if mapper.answer_column is not None else None
        self.position = _Position(len(self.indices), order)

    def __len__(self) -> int:
        return len(self.indices)

    def draw(self, rng: np.random.Generator, k: int) -> list[Row]:
        out = []
        for _ in range(k):
            i = self.indices[self.position.next(rng)]
            raw = self.table[i]
            out.append(self.mapper.row(dict(raw), self.answers[i]))
        return out

    def restart(self) -> None:
        self.position.restart()

    def state_dict(self) -> dict[str, Any]:
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position.load_state_dict(state)


class StreamSource(PromptSource):
    """A ``datasets.IterableDataset``: read in order (shuffled with a buffer in random order)."""

    def __init__(self, stream: Any, mapper: _RowMapper, order: str, shuffle_buffer: int = 1000) -> None:
        self.stream, self.mapper, self.order, self.shuffle_buffer = stream, mapper, order, shuffle_buffer
        if getattr(stream, "column_names", None):
            mapper.check_columns(list(stream.column_names))
        # without answers there is nothing for math to check: the reward must be given
        self.default_reward = self.checker = "math" if mapper.answer_column is not None else None
        self.skipped, self._warned, self._checked = 0, False, False
        self.restart()

    def restart(self) -> None:
        self.epoch, self.pos, self.epoch_seed, self._iter, self._valid_in_epoch = 0, 0, None, None, False

    def _open(self, rng: np.random.Generator) -> Iterator[dict]:
        stream = self.stream
        if self.order == "random":
            if self.epoch_seed is None:
                self.epoch_seed = int(rng.integers(2**32))
            stream = stream.shuffle(seed=self.epoch_seed, buffer_size=self.shuffle_buffer)
        it = iter(stream)
        for _ in range(self.pos):  # resume: replay up to the saved position
            next(it)
        return it

    def draw(self, rng: np.random.Generator, k: int) -> list[Row]:
        out: list[Row] = []
        while len(out) < k:
            if self._iter is None:
                self._iter = self._open(rng)
            raw = next(self._iter, None)
            if raw is None:
                if not self._valid_in_epoch:
                    raise DataError("the dataset is empty (no usable rows in the stream)")
                self.epoch, self.pos, self.epoch_seed, self._iter = self.epoch + 1, 0, None, None
                self._valid_in_epoch = False
                continue
            self.pos += 1
            if not self._checked:
                self.mapper.check_columns(list(raw))
                self._checked = True
            answer = self.mapper.answer(raw.get(self.mapper.answer_column)) if self.mapper.answer_column else None
            if not self.mapper.valid_prompt(raw.get(self.mapper.prompt_column)) or (
                    self.mapper.answer_column is not None and answer is None):
                self.skipped += 1
                if not self._warned:  # a stream's length is unknown: one warning, the count is env.source.skipped
                    warnings.warn("skipping streamed rows with a missing or empty prompt or answer "
                                  "(the count so far is in env.source.skipped)", stacklevel=4)
                    self._warned = True
                continue
            self._valid_in_epoch = True
            out.append(self.mapper.row(dict(raw), answer))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "epoch_seed": self.epoch_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.pos, self.epoch_seed = int(state["epoch"]), int(state["pos"]), state["epoch_seed"]
        self._iter, self._valid_in_epoch = None, self.pos > 0


def __getattr__(name: str) -> Any:
    # Construction lives in .source_kwargs (which imports this module): resolved on first use.
    if name in ("build_source", "PRESETS", "SOURCE_KWARGS", "TASKS"):
        from . import source_kwargs

        return getattr(source_kwargs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
