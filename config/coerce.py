"""Plain data <-> the config dataclasses: type checks, the few coercions YAML needs, to_dict."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Literal, Union

from ..errors import ConfigError, PluginError, closest
from .resolver import installed_resolver
from .schema import AlgoConfig, RunConfig

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against ``tp`` (with the few safe coercions YAML needs)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key {key!r} = {value!r} has the wrong type; expected {_type_name(tp)}")
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key {key!r} = {value!r} is invalid; expected {_type_name(tp)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise bad
        return from_dict(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    return value


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


AlgoConfigLookup = Callable[[str], type]
"""``name -> Algorithm.Config``: how a RunConfig's ``algo`` section finds its dataclass."""


def from_dict(cls: type, data: dict[str, Any], prefix: str = "", *,
              algo_config: AlgoConfigLookup | None = None) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    ``algo_config`` resolves ``algo.name`` of a RunConfig to its config class; without one the
    section is read as the bare :class:`AlgoConfig`.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or '(top level)'!r} must be a mapping, got {data!r}")
    fields = _fields(cls)
    kwargs: dict[str, Any] = {}
    if cls is RunConfig and "algo" not in data:
        # The chosen algorithm's own Config supplies the defaults (e.g. GRPO's group_size).
        data = {**data, "algo": {}}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            hint = closest(str(key), fields)
            did = f"; did you mean {(prefix + '.' if prefix else '') + hint!r}?" if hint else ""
            raise ConfigError(f"unknown config key {path!r}{did} valid keys here: {', '.join(fields)}")
        if cls is RunConfig and key == "algo":
            kwargs[key] = algo_config_from_dict(value, path, algo_config=algo_config)
        else:
            kwargs[key] = _coerce(value, fields[key], path)
    return cls(**kwargs)


def algo_config_from_dict(data: Any, prefix: str = "algo", *, algo_config: AlgoConfigLookup | None = None,
                          config_cls: type | None = None) -> AlgoConfig:
    """Build the ``algo`` section as its algorithm's own config dataclass.

    The class is ``config_cls`` when given, else ``algo_config(name)``, else the one the
    composition root installed (:func:`rftgym.config.install_resolver`), else AlgoConfig.
    """
    if isinstance(data, AlgoConfig):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix!r} must be a mapping, got {data!r}")
    name = data.get("name", AlgoConfig.name)
    if config_cls is None:
        lookup = algo_config or _installed_lookup()
        config_cls = lookup(name) if lookup is not None else AlgoConfig
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)
            and issubclass(config_cls, AlgoConfig)):
        raise PluginError(f"algorithm {name!r}: its Config must be a dataclass subclassing rftgym.config.AlgoConfig")
    return from_dict(config_cls, {**data, "name": name}, prefix)


def _installed_lookup() -> AlgoConfigLookup | None:
    resolver = installed_resolver()
    return resolver.algo_config if resolver is not None else None


def to_dict(obj: Any) -> Any:
    """Plain data (for YAML) from a config dataclass tree."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


