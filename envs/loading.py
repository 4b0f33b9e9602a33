"""Loading prompt data: ``datasets`` objects, local jsonl/json/csv/parquet files, hub names."""
from __future__ import annotations

import os
from typing import Any

from ..errors import RftgymError

_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(RftgymError, ValueError):
    """Prompt data that cannot be used (missing columns, empty splits, unreadable files)."""


def _builder_for(files: Any) -> str:
    """The ``datasets`` packaged builder for local ``files`` (a path, a list, or a split dict)."""
    if isinstance(files, dict):
        files = [f for value in files.values() for f in ([value] if isinstance(value, str) else value)]
    elif isinstance(files, (str, os.PathLike)):
        files = [files]
    kinds = {_BUILDERS.get(os.path.splitext(str(f).removesuffix(".gz"))[1].lower()) for f in files}
    if len(kinds) != 1 or None in kinds:
        raise DataError(f"cannot tell the format of data_files {[str(f) for f in files]!r}; "
                        f"use one of {', '.join(sorted(_BUILDERS))} or pass path='json'|'csv'|'parquet'")
    return kinds.pop()


def pick_split(data: Any, split: str) -> Any:
    """``data[split]`` for a ``DatasetDict``, with an error listing the splits found."""
    import datasets

    if isinstance(data, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        splits = list(data.keys())
        if split not in splits:
            raise DataError(f"split {split!r} not found; splits found: {', '.join(splits) or '(none)'}")
        return data[split]
    return data


def load_data(*, path: str | None = None, name: str | None = None, data_files: Any = None,
              split: str = "train", streaming: bool = False, cache_dir: str | None = None) -> Any:
    """A ``Dataset`` (or ``IterableDataset`` when ``streaming``) for ``split`` of the given data.

    Local files go through ``datasets.load_dataset`` with the packaged json/csv/parquet builders;
    a missing local file is an error here instead of a hub look-up. Any other ``path`` is a
    hub name or a local dataset folder (reaching the hub is the caller's machine's business).
    """
    import datasets

    if data_files is None and path is not None and os.path.isfile(os.path.expanduser(path)):
        data_files, path = os.path.expanduser(path), None
    if data_files is not None:
        builder = path if path in ("json", "csv", "parquet") else _builder_for(data_files)
        missing = [f for f in _file_list(data_files) if "*" not in f and not os.path.exists(f)]
        if missing:
            raise DataError(f"data file not found: {missing[0]}")
        data = datasets.load_dataset(builder, data_files=data_files, streaming=streaming, cache_dir=cache_dir)
        return pick_split(data, split)
    if path is None:
        raise TypeError("missing argument 'path' (or 'data_files' or 'dataset')")
    path = str(path)
    if os.path.splitext(path)[1].lower() in _BUILDERS:  # a file name that does not exist
        raise DataError(f"data file not found: {path}")
    data = datasets.load_dataset(path, name, streaming=streaming, cache_dir=cache_dir)
    return pick_split(data, split)


def _file_list(data_files: Any) -> list[str]:
    if isinstance(data_files, dict):
        return [str(f) for v in data_files.values() for f in ([v] if isinstance(v, (str, os.PathLike)) else v)]
    if isinstance(data_files, (str, os.PathLike)):
        return [str(data_files)]
    return [str(f) for f in data_files]
