"""Building a prompt source from an env's keyword arguments (presets, tasks, datasets)."""
from __future__ import annotations

from typing import Any, Sequence

from ..errors import ConfigError, closest
from .formatting import Formatter
from .loading import load_data, pick_split
from .sources import ORDERS, PromptSource, StreamSource, TableSource, TaskSource, _RowMapper

TASKS = {  # name -> (task class reference, default reward, checker used by check="auto")
    "arithmetic": ("rftgym.envs.tasks.arithmetic:ArithmeticTask", "math", "math"),
    "countdown": ("rftgym.envs.tasks.countdown:CountdownTask", "countdown", "countdown"),
    "python_tests": ("rftgym.envs.tasks.python_tests:PythonTestsTask", "code", "code"),
    "reasoning_gym": ("rftgym.envs.tasks.reasoning_gym:ReasoningGymTask", "reasoning_gym", "reasoning_gym"),
}


PRESETS: dict[str, dict[str, Any]] = {
    "gsm8k": {"prompt_column": "question", "answer_column": "answer", "answer_format": "gsm8k",
              "template": "{prompt}\nLet's think step by step and output the final answer after \"####\"."},
    "math": {"prompt_column": "problem", "answer_column": "solution", "answer_format": "boxed",
             "template": "{prompt}\nLet's think step by step and output the final answer within \\boxed{{}}."},
}
SOURCE_KWARGS = ("task", "dataset", "path", "name", "data_files", "split", "streaming", "prompt_column",
                 "answer_column", "columns", "answer_format", "template", "chat_template", "tokenizer",
                 "system_prompt", "order", "preset", "shuffle_buffer", "cache_dir", "curriculum")


def _resolve_task(task: Any, split: str, options: dict[str, Any]) -> tuple[Any, str | None, str | None]:
    """A task instance plus its default reward and checker names."""
    if not isinstance(task, str):
        if options:
            raise ConfigError(f"unknown env argument {next(iter(options))!r} (task options go to the task object itself)")
        return task, getattr(task, "default_reward", "math"), getattr(task, "checker", "math")
    if task not in TASKS:
        hint = closest(task, TASKS)
        raise ConfigError(f"unknown task {task!r}{f'; did you mean {hint!r}?' if hint else ''} available: {', '.join(sorted(TASKS))}")
    ref, default_reward, checker = TASKS[task]
    import dataclasses
    import importlib

    module, _, attr = ref.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    accepted = [f.name for f in dataclasses.fields(cls) if f.init and f.name != "split"]
    for key in options:
        if key not in accepted:
            hint = closest(key, accepted + list(SOURCE_KWARGS))
            raise ConfigError(f"task {task!r} has no option {key!r}{f'; did you mean {hint!r}?' if hint else ''} "
                              f"accepted: {', '.join(accepted)}")
    return cls(split=split, **options), default_reward, checker


def build_source(**kwargs: Any) -> PromptSource:
    """The prompt source described by an env's keyword arguments (see docs/internals.md).

    A ``preset`` (``"gsm8k"``, ``"math"``) fills in column names, answer format and template
    that the caller did not give; everything else is :func:`_build_source`'s.
    A ``curriculum`` (``true`` or its options, see :mod:`rftgym.envs.curriculum`) draws the
    source's prompts by their running pass rate.
    """
    preset = kwargs.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; available: {', '.join(sorted(PRESETS))}")
        kwargs = {**PRESETS[preset], **kwargs}
    curriculum = kwargs.pop("curriculum", None)
    if curriculum is not None and curriculum is not False:
        from .curriculum import CurriculumOptions, CurriculumSource

        options = CurriculumOptions.from_value(curriculum)  # bad options fail before any data loads
        return CurriculumSource(_build_source(**kwargs), options)
    return _build_source(**kwargs)


def _build_source(*, task: Any = None, dataset: Any = None, path: str | None = None, name: str | None = None,
                 data_files: Any = None, split: str | None = None, streaming: bool = False,
                 prompt_column: str = "prompt", answer_column: str | None = "answer",
                 columns: Sequence[str] | None = None, answer_format: str = "auto", template: str | None = None,
                 chat_template: bool = False, tokenizer: Any = None, system_prompt: str | None = None,
                 order: str = "random", preset: str | None = None, shuffle_buffer: int = 1000,
                 cache_dir: str | None = None, env_id: str | None = None, **task_options: Any) -> PromptSource:
    """Exactly one of ``task`` (a procedural task name or object, with its options as extra
    keyword arguments), ``dataset`` (a ``Dataset``, ``IterableDataset``, ``DatasetDict`` or a
    list of dicts) and ``path``/``data_files`` (local files or a hub name) gives the data.
    """
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    what = env_id or (f"preset {preset!r}" if preset else "the prompt dataset env")
    given = [k for k, v in (("task", task), ("dataset", dataset), ("path", path), ("data_files", data_files)) if v is not None]
    if not given:
        raise TypeError(f"{what} needs data: missing argument 'path' (a local file or hub name), "
                        f"or pass 'data_files' or 'dataset'")
    if task is not None and len(given) > 1:
        raise ConfigError(f"give either task or dataset arguments, not both (got {', '.join(given)})")
    forbidden = ("answer",) + ((answer_column,) if answer_column and task is None else ())
    formatter = Formatter(template, chat_template, tokenizer, system_prompt, forbidden=forbidden)
    if task is not None:
        task_obj, default_reward, checker = _resolve_task(task, split or "train", task_options)
        return TaskSource(task_obj, order, formatter, default_reward, checker)
    if task_options:
        key = next(iter(task_options))
        hint = closest(key, SOURCE_KWARGS)
        raise ConfigError(f"unknown env argument {key!r}{f'; did you mean {hint!r}?' if hint else ''}")
    mapper = _RowMapper(prompt_column, answer_column, columns, answer_format, formatter)
    split = split or "train"
    if dataset is None:
        dataset = load_data(path=path, name=name, data_files=data_files, split=split, streaming=streaming,
                            cache_dir=cache_dir)
    elif not isinstance(dataset, list):
        dataset = pick_split(dataset, split)
    if isinstance(dataset, list) or hasattr(dataset, "__len__") and hasattr(dataset, "column_names"):
        return TableSource(dataset, mapper, order)
    return StreamSource(dataset, mapper, order, shuffle_buffer)
