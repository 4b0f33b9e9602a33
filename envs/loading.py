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
        empty = [f for f in _file_list(data_files) if "*" not in f and os.path.isfile(f) and os.path.getsize(f) == 0]
        if empty:
            raise DataError(f"data file {empty[0]} is empty")
        data = _load_local(datasets, builder, data_files, streaming, cache_dir)
        return pick_split(data, split)
    if path is None:
        raise TypeError("missing argument 'path' (or 'data_files' or 'dataset')")
    path = str(path)
    if os.path.splitext(path)[1].lower() in _BUILDERS:  # a file name that does not exist
        raise DataError(f"data file not found: {path}")
    data = datasets.load_dataset(path, name, streaming=streaming, cache_dir=cache_dir)
    return pick_split(data, split)


def _load_local(datasets: Any, builder: str, data_files: Any, streaming: bool, cache_dir: str | None) -> Any:
    """``datasets.load_dataset`` on local files; a file it cannot read is one DataError naming it.

    ``datasets`` logs its own multi-line report of a parse failure; the DataError carries the
    cause instead, so that logger is quieted for the call.
    """
    import logging

    quiet = logging.getLogger("datasets")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        data = datasets.load_dataset(builder, data_files=data_files, streaming=streaming, cache_dir=cache_dir)
        _check_utf8(data, data_files)
        return data
    except DataError:
        raise
    except Exception as exc:
        cause: BaseException = exc
        while cause.__cause__ is not None or (cause.__context__ is not None and not str(cause).strip()):
            cause = cause.__cause__ or cause.__context__  # the parser's own error, not the wrapper's
        if builder == "json":
            _raise_bad_json_line(data_files)  # names the file and its 1-based line, if one is at fault
        what = "not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else f"not readable as {builder}"
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        files = ", ".join(_file_list(data_files))
        raise DataError(f"data file {files} is {what}: {type(cause).__name__}: {text}") from exc
    finally:
        quiet.setLevel(level)


def _raise_bad_json_line(data_files: Any) -> None:
    """The first line of a ``.jsonl`` file that is not one JSON object, as a DataError."""
    import json

    for name in _file_list(data_files):
        if not name.endswith((".jsonl", ".ndjson")) or not os.path.isfile(name):
            continue
        with open(name, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise DataError(f"data file {name} line {number} is not valid JSON: {exc}") from None
                if not isinstance(row, dict):
                    raise DataError(f"data file {name} line {number} is a JSON {type(row).__name__}, "
                                    f"not an object with one key per column") from None


def _check_utf8(data: Any, data_files: Any) -> None:
    """Arrow reads invalid UTF-8 into string columns and fails only when a row is read, which
    could be hours into a run: validate every string column now (C speed)."""
    parts = data.values() if hasattr(data, "values") else [data]
    for part in parts:
        table = getattr(getattr(part, "data", None), "table", None)  # streaming datasets have none
        if table is None:
            continue
        for name in table.column_names:
            try:
                table.column(name).validate(full=True)
            except Exception as exc:  # pyarrow.ArrowInvalid
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DataError(f"data file {', '.join(_file_list(data_files))}: column {name!r} is not valid "
                                f"UTF-8 text ({text})") from None


def _file_list(data_files: Any) -> list[str]:
    if isinstance(data_files, dict):
        return [str(f) for v in data_files.values() for f in ([v] if isinstance(v, (str, os.PathLike)) else v)]
    if isinstance(data_files, (str, os.PathLike)):
        return [str(data_files)]
    return [str(f) for f in data_files]
