"""Preference pairs for ``rftgym train-rm``: TRL's columns, or built-in arithmetic near misses."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..envs.tasks.arithmetic import ArithmeticTask
from ..errors import RftgymError
from ..rewards.reward_model import pair_text, uses_template

NEAR_MISS_OFFSETS = (-11, -10, -2, -1, 1, 2, 10, 11)


@dataclasses.dataclass
class Pairs:
    """Preference pairs as rendered text (what the model reads) plus optional margins."""

    chosen: list[str]
    rejected: list[str]
    templated: list[bool]
    margin: list[float] | None = None

    def __len__(self) -> int:
        return len(self.chosen)

    def select(self, index: Sequence[int]) -> "Pairs":
        pick = lambda xs: [xs[i] for i in index]  # noqa: E731
        return Pairs(pick(self.chosen), pick(self.rejected), pick(self.templated),
                     None if self.margin is None else pick(self.margin))


def arithmetic_preference_rows(num_pairs: int, split: str, seed: int, digits: int = 2) -> list[dict]:
    """Near-miss pairs ``{"prompt": "37+45=", "chosen": "82", "rejected": "83"}`` from one split.

    Rejected = correct sum + one of ±1, ±2, ±10, ±11 (never negative, which would be an easy
    tell). ``split="test"`` draws only held-out prompts, so evaluation never sees a training prompt.
    """
    task = ArithmeticTask(digits=digits, split=split)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    rows = []
    while len(rows) < num_pairs:
        row = task.sample(rng)
        right = int(row["answer"])
        offsets = [o for o in NEAR_MISS_OFFSETS if right + o >= 0]
        wrong = right + offsets[int(rng.integers(len(offsets)))]
        rows.append({"prompt": row["prompt"], "chosen": row["answer"], "rejected": str(wrong)})
    return rows


def _load_dataset(data: Any) -> tuple[Any, Any | None]:
    """(train rows, eval rows or None) from a path, a hub name, a Dataset or a DatasetDict."""
    import datasets

    if isinstance(data, (list, tuple)):
        return datasets.Dataset.from_list(list(data)), None
    if isinstance(data, datasets.DatasetDict):
        train = data["train"] if "train" in data else next(iter(data.values()))
        held = next((data[k] for k in ("test", "validation", "eval") if k in data), None)
        return train, held
    if isinstance(data, datasets.Dataset):
        return data, None
    path = Path(str(data))
    kinds = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    if path.is_file():
        kind = kinds.get(path.suffix.lower())
        if kind is None:
            raise RftgymError(f"preference data {str(path)!r}: unsupported file type {path.suffix!r}; "
                              f"use {', '.join(kinds)}")
        return datasets.load_dataset(kind, data_files=str(path), split="train"), None
    if path.is_dir() and (path / "dataset_info.json").is_file():
        return _load_dataset(datasets.load_from_disk(str(path)))
    try:
        loaded = datasets.load_dataset(str(data))
    except Exception as exc:  # hub errors come in many types; one line is what the user needs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RftgymError(f"preference data {str(data)!r} is not a local file or a loadable dataset ({first})") from None
    return _load_dataset(loaded)


def rows_to_pairs(rows: Any, tokenizer: Any, chat_template: bool = False, what: str = "preference data") -> tuple[Pairs, int]:
    """Render rows (TRL columns) to :class:`Pairs`; returns (pairs, pairs skipped as chosen == rejected)."""
    columns = list(rows.column_names) if hasattr(rows, "column_names") else sorted({k for r in rows for k in r})
    missing = [c for c in ("chosen", "rejected") if c not in columns]
    if missing:
        raise RftgymError(f"{what} lacks column(s) {', '.join(repr(c) for c in missing)} "
                          f"(found: {', '.join(columns) or 'none'}); expected TRL's prompt, chosen, rejected [, margin]")
    has_prompt, has_margin = "prompt" in columns, "margin" in columns
    pairs = Pairs([], [], [], [] if has_margin else None)
    skipped = 0
    for row in rows:
        prompt = row["prompt"] if has_prompt else ""
        chosen = pair_text(tokenizer, prompt, row["chosen"], chat_template)
        rejected = pair_text(tokenizer, prompt, row["rejected"], chat_template)
        if chosen == rejected:  # no preference to learn; counted and reported
            skipped += 1
            continue
        pairs.chosen.append(chosen)
        pairs.rejected.append(rejected)
        pairs.templated.append(uses_template(tokenizer, prompt, row["chosen"], chat_template))
        if has_margin:
            pairs.margin.append(float(row["margin"]))
    return pairs, skipped


def load_pairs(data: Any, tokenizer: Any, eval_fraction: float, seed: int, num_pairs: int,
               eval_pairs: int, chat_template: bool) -> tuple[Pairs, Pairs, int]:
    """(train, held-out, skipped). ``data=None`` → built-in arithmetic near-miss pairs."""
    if data is None:
        train, skipped = rows_to_pairs(arithmetic_preference_rows(num_pairs, "train", seed), tokenizer)
        held, skipped_eval = rows_to_pairs(arithmetic_preference_rows(eval_pairs, "test", seed), tokenizer)
        return train, held, skipped + skipped_eval
    rows, held_rows = _load_dataset(data)
    pairs, skipped = rows_to_pairs(rows, tokenizer, chat_template)
    if held_rows is not None:
        held, skipped_eval = rows_to_pairs(held_rows, tokenizer, chat_template, "held-out preference data")
        return pairs, held, skipped + skipped_eval
    if len(pairs) == 0:
        raise RftgymError(f"preference data {str(data)!r} has no usable pairs ({skipped} had chosen == rejected)")
    order = np.random.default_rng(seed).permutation(len(pairs)).tolist()
    n_eval = 0 if eval_fraction <= 0 or len(pairs) < 2 else max(1, int(round(len(pairs) * eval_fraction)))
    n_eval = min(n_eval, len(pairs) - 1)
    return pairs.select(order[n_eval:]), pairs.select(order[:n_eval]), skipped
