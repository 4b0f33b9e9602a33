"""reasoning-gym datasets as a procedural task (``rftgym/ReasoningGym-v0``).

``tasks`` names one reasoning-gym dataset, a list of them (equal weights) or a mapping
``{name: weight}``; ``config`` holds the dataset's own options (for one task) or
``{name: options}``. The train split is generated with ``seed``, the held-out split with a
different seed (``seed + TEST_SEED_OFFSET``), each of ``size`` items per task. Rows carry the
reasoning-gym entry (``rg_entry``) so the ``reasoning_gym`` reward scores with that task's own
``score_answer``. Needs the optional extra: ``pip install 'rftgym[reasoning-gym]'``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ...errors import ConfigError, RftgymError

TEST_SEED_OFFSET = 1_000_003
INSTALL_HINT = "reasoning-gym is not installed: pip install 'rftgym[reasoning-gym]' (or pip install reasoning-gym)"
PROMPT_SUFFIX = "\nGive your final answer inside <answer></answer> tags."


def import_reasoning_gym() -> Any:
    """The ``reasoning_gym`` module, or one clear error naming the pip command."""
    try:
        import reasoning_gym
    except ImportError:
        raise RftgymError(INSTALL_HINT) from None
    return reasoning_gym


def task_names() -> list[str]:
    """Every dataset name the installed reasoning-gym provides."""
    return sorted(import_reasoning_gym().factory.DATASETS)


def _weights(tasks: Any) -> dict[str, float]:
    if isinstance(tasks, str):
        return {tasks: 1.0}
    if isinstance(tasks, dict):
        return {str(k): float(v) for k, v in tasks.items()}
    if isinstance(tasks, (list, tuple)) and tasks:
        return {str(t): 1.0 for t in tasks}
    raise ConfigError("reasoning_gym needs tasks= (a dataset name, a list of names or {name: weight}); "
                      "rftgym plugins or reasoning_gym.factory.DATASETS lists them")


def _composite_options(rg: Any, options: dict) -> dict:
    """reasoning-gym's own ``composite`` wants ``datasets`` as ``DatasetSpec`` objects; a YAML
    config gives mappings ``{name, weight, config}``."""
    from reasoning_gym.composite import DatasetSpec

    specs = options.get("datasets")
    if not specs:
        raise ConfigError("reasoning-gym task 'composite' needs config datasets=[{name, weight, config}, ...] "
                          "(or use tasks={name: weight}, which mixes tasks the same way)")
    try:
        options["datasets"] = [spec if isinstance(spec, DatasetSpec) else
                               DatasetSpec(name=spec["name"], weight=float(spec.get("weight", 1.0)),
                                           config=dict(spec.get("config") or {})) for spec in specs]
    except (KeyError, TypeError, AttributeError):
        raise ConfigError("reasoning-gym composite: each of config.datasets needs a name "
                          f"(and optional weight, config), got {specs!r}") from None
    return options


@dataclass
class ReasoningGymTask:
    """Items of one or several reasoning-gym datasets; sampling follows the task weights."""

    tasks: Any = None
    config: dict = field(default_factory=dict)
    size: int = 500
    seed: int = 42
    split: str = "train"
    prompt_suffix: str = PROMPT_SUFFIX

    default_reward = "reasoning_gym"
    checker = "reasoning_gym"

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"reasoning_gym split must be 'train' or 'test', got {self.split!r}")
        if not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"reasoning_gym size must be a positive integer, got {self.size!r}")
        weights = _weights(self.tasks)
        rg = import_reasoning_gym()
        known = task_names()
        for name in weights:
            if name not in known:
                import difflib

                near = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
                raise ConfigError(f"unknown reasoning-gym task {name!r}"
                                  f"{'; did you mean ' + ', '.join(map(repr, near)) + '?' if near else ''} "
                                  f"({len(known)} tasks: {', '.join(known[:8])}, ...)")
            if weights[name] < 0:
                raise ConfigError(f"reasoning_gym weight of {name!r} must be >= 0, got {weights[name]!r}")
        if sum(weights.values()) <= 0:
            raise ConfigError("reasoning_gym task weights must not all be zero")
        several = len(weights) > 1
        if several and self.config and not set(self.config) <= set(weights):
            raise ConfigError("with several tasks, config must be {task name: options}; "
                              f"unknown task in config: {sorted(set(self.config) - set(weights))[0]!r}")
        seed = self.seed + (TEST_SEED_OFFSET if self.split == "test" else 0)
        self.names = list(weights)
        self.probs = np.array([weights[n] for n in self.names]) / sum(weights.values())
        self.datasets = []
        for i, name in enumerate(self.names):
            options = dict(self.config.get(name, {}) if several else self.config)
            if name == "composite":
                options = _composite_options(rg, options)
            try:
                ds = rg.create_dataset(name, size=self.size, seed=seed + 7919 * i, **options)
            except TypeError as exc:
                raise ConfigError(f"reasoning-gym task {name!r}: bad config {options!r}: {exc}") from None
            self.datasets.append(ds)

    def _row(self, t: int, index: int) -> dict:
        entry = self.datasets[t][index]
        # A composite's item names the dataset that made it: that dataset's scorer scores it.
        source = (entry.get("metadata") or {}).get("source_dataset") or self.names[t]
        return {"prompt": entry["question"] + self.prompt_suffix, "answer": entry["answer"],
                "rg_task": source, "rg_entry": entry}

    def sample(self, rng: np.random.Generator) -> dict:
        """One item: a task by weight, then an item of it."""
        t = int(rng.choice(len(self.names), p=self.probs)) if len(self.names) > 1 else 0
        return self._row(t, int(rng.integers(self.size)))

    def __iter__(self) -> Iterator[dict]:
        """Every item, tasks interleaved, in a fixed order."""
        for index in range(self.size):
            for t in range(len(self.names)):
                if self.probs[t] > 0:
                    yield self._row(t, index)
