"""Reading and writing configs: YAML files, ``--set a.b=value`` overrides, and build_config.

Validation happens before any model is loaded: an unknown key names the closest valid key,
a wrong type names the key, the value and the expected type.
"""
from __future__ import annotations

import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .coerce import _coerce, from_dict, to_dict
from .resolver import NameResolver, installed_resolver
from .schema import AlgoConfig, RunConfig


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` → (["a", "b"], typed value); the value is read as YAML (``1e-5``, ``true``, ``[1,2]``)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: the key is empty")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any, defaults: Any = None) -> None:
    """Set ``data[path[0]][path[1]]... = value``; list items by index (``rewards.0.weight``).

    ``defaults`` is the default tree (``to_dict(RunConfig())``): a list or mapping missing from
    ``data`` starts as its default, so ``rewards.0.weight=0.5`` edits the default reward and
    ``env.eval_kwargs.digits=3`` keeps the default ``split: test``. Index ``len(list)`` appends.
    """
    node: Any = data
    default: Any = defaults
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            idx = _index(part, node, path, allow_append=True)
            if idx == len(node):
                node.append({})
            node = node[idx]
            default = None  # list items have no per-index defaults beyond their dataclass
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"config key {'.'.join(path)!r}: {'.'.join(path[:i])!r} is a value, not a section")
        default = default.get(part) if isinstance(default, dict) else None
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = _deep_copy(default) if isinstance(default, (dict, list)) else {}
        node = nxt
    last = path[-1]
    if isinstance(node, list):
        idx = _index(last, node, path, allow_append=True)
        if idx == len(node):
            node.append(value)
        else:
            node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"config key {'.'.join(path)!r}: {'.'.join(path[:-1])!r} is a value, not a section")


def _index(part: str, node: list, path: list[str], allow_append: bool = False) -> int:
    try:
        idx = int(part)
    except ValueError:
        idx = -1
    if 0 <= idx < len(node) + (1 if allow_append else 0):
        return idx
    raise ConfigError(f"config key {'.'.join(path)!r}: {part!r} is not an index of a list of {len(node)}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping (with a one-line error when it is not one)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}"
                          f"{f' ({context})' if context else ''}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def build_config(base: RunConfig | dict[str, Any] | str | Path | None = None,
                 overrides: list[str] | None = None, values: dict[str, Any] | None = None, *,
                 resolver: NameResolver | None = None) -> RunConfig:
    """The validated RunConfig from a YAML path/dict/RunConfig, ``--set`` overrides and flag values.

    ``values`` maps dotted keys to already-typed values (the CLI's convenience flags).
    ``resolver`` (default: the installed one, see :mod:`rftgym.config.resolver`) loads the
    plugins the config lists, picks the algorithm's config class and checks reward and env
    names; with none at all the config is checked as data only.
    """
    resolver = resolver or installed_resolver()
    if isinstance(base, RunConfig):
        data = to_dict(base)
    elif isinstance(base, (str, Path)):
        data = load_yaml(base)
    else:
        data = dict(base or {})
    data = _deep_copy(data)
    base_algo = dict(data.get("algo") or {})
    defaults = to_dict(RunConfig())
    defaults.pop("algo")  # an algorithm's defaults depend on its name; its Config supplies them
    set_keys: set[str] = set()
    for key, value in (values or {}).items():
        apply_override(data, key.split("."), value, defaults)
        set_keys.add(key)
    for text in overrides or []:
        path, value = parse_override(text)
        apply_override(data, path, value, defaults)
        set_keys.add(".".join(path))
    if data.get("plugins") and resolver is not None:
        # The config's own plugins may provide the algorithm, rewards or env it names.
        resolver.load_plugins(_coerce(data["plugins"], list[str], "plugins"))
    if resolver is not None:
        _drop_foreign_algo_keys(data, base_algo, set_keys, resolver)
    config = from_dict(RunConfig, data, algo_config=resolver.algo_config if resolver is not None else None)
    config.validate()
    if resolver is not None:
        resolver.check_names(config)
    return config


def _drop_foreign_algo_keys(data: dict[str, Any], base_algo: dict[str, Any], set_keys: set[str],
                            resolver: NameResolver) -> None:
    """Swapping algorithms by name (``--algo ppo`` on a GRPO config) keeps the settings both
    share and drops, with a warning naming them, the ones only the config's own algorithm has
    (``algo.beta`` is GRPO's KL coefficient; PPO's is ``algo.kl_coef``). A key given on the
    command line is never dropped: it still fails loudly when the new algorithm lacks it."""
    algo = data.get("algo")
    if not isinstance(algo, dict):
        return
    old, new = base_algo.get("name", AlgoConfig.name), algo.get("name", AlgoConfig.name)
    if old == new:
        return
    known = {f.name for f in fields(resolver.algo_config(new))}
    dropped = [k for k in base_algo if k not in known and f"algo.{k}" not in set_keys]
    for key in dropped:
        del algo[key]
    if dropped:
        warnings.warn(f"algo.name switched from {old!r} to {new!r}: dropped the config's "
                      f"{', '.join(f'algo.{k}={base_algo[k]!r}' for k in dropped)} ({new!r} has no such "
                      f"setting; set its own with --set algo.KEY=VALUE)", UserWarning, stacklevel=3)


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def dump_yaml(config: RunConfig) -> str:
    """The resolved config as YAML (what ``config.yaml`` in the run directory holds)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
