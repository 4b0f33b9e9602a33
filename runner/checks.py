"""Checks the composition root runs before any model loads (and so under ``--dry-run``).

What fails right after a real start should fail here instead, with one line naming the key:
env keyword arguments that the env does not take or refuses, data files and model
directories that do not exist, the advantage estimator's name, and reward options a reward
class checks itself (an optional ``check_options(**options)`` on the reward).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import EMBEDDED_MODEL, RunConfig
from ..errors import ConfigError, RftgymError, closest
from ..plugins.manager import get_manager

# Keyword arguments every rftgym env passes on to its prompt source (envs/sources.py).
_OWN_ENTRY_POINTS = ("rftgym.envs.vector:PromptBanditVectorEnv", "rftgym.envs.bandit:PromptBanditEnv")


def looks_like_local_path(name: str) -> bool:
    """Whether ``name`` can only be a local path: a hub id is ``name`` or ``owner/name``."""
    text = str(name)
    return (text.startswith(("/", "./", "../", "~", ".\\")) or text in (".", "..")
            or text.count("/") > 1 or text.endswith("/") or "\\" in text)


def check_model_path(name_or_path: str, key: str = "model.name_or_path") -> None:
    """A local model directory that does not exist: say so (not a hub-id format problem)."""
    if name_or_path == EMBEDDED_MODEL:
        return
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{key} = {name_or_path!r} is a file; expected a model directory "
                              f"(config.json + weights + tokenizer) or a hub id")
        return
    if looks_like_local_path(name_or_path):
        raise ConfigError(f"{key} = {name_or_path!r}: no such directory; expected a model "
                          f"directory saved with save_pretrained, a hub id, or 'embedded'")


def _files(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _files(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _files(v)


def _check_files(kwargs: Mapping[str, Any], label: str) -> None:
    for key in ("data_files",):
        for name in _files(kwargs.get(key)):
            if any(ch in name for ch in "*?[") or "://" in name:
                continue  # a glob or a URL: the loader resolves it
            if not Path(name).expanduser().exists():
                raise ConfigError(f"config key '{label}.{key}': data file {name!r} does not exist")
    path = kwargs.get("path")
    if isinstance(path, str) and looks_like_local_path(path) and not Path(path).expanduser().exists():
        raise ConfigError(f"config key '{label}.path' = {path!r}: no such file or directory "
                          f"(expected a local file or folder, or a datasets hub name)")


def _accepted(fn: Any) -> tuple[set[str], bool]:
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {"self"}, any(p.kind is p.VAR_KEYWORD for p in params)


def check_env_kwargs(config: RunConfig) -> None:
    """Env keyword arguments against the env's signature; data files exist; a procedural
    task's options are built (cheap) so that a refused value fails now."""
    import gymnasium  # deferred: gymnasium's import is not free and ``import rftgym`` must stay light

    spec = gymnasium.spec(config.env.id)
    entry = spec.vector_entry_point or spec.entry_point
    own = isinstance(entry, str) and entry in _OWN_ENTRY_POINTS
    sections = (("env.kwargs", dict(config.env.kwargs)),
                ("env.eval_kwargs", {**config.env.kwargs, **config.env.eval_kwargs}))
    for label, user in sections:
        merged = {**spec.kwargs, **user}
        _check_files(merged, label)
        if not own:
            creator = gymnasium.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
            names, open_ended = _accepted(creator)
            # The default held-out ``split`` is dropped for an env without splits (build.py).
            unknown = [k for k in user if k not in names and not (label == "env.eval_kwargs" and k == "split")]
            if unknown and not open_ended:
                raise ConfigError(_unknown(label, unknown[0], names))
            continue
        _check_own_env(label, user, merged)


def _unknown(label: str, key: str, names: Iterable[str]) -> str:
    hint = closest(key, names)
    return (f"config key '{label}.{key}' is not an argument of the env"
            f"{f'; did you mean {hint!r}?' if hint else ''} accepted: {', '.join(sorted(names))}")


def _check_own_env(label: str, user: dict[str, Any], merged: dict[str, Any]) -> None:
    from ..envs.source_kwargs import SOURCE_KWARGS, _build_source, build_source
    from ..envs.vector import PromptBanditVectorEnv

    env_names, _ = _accepted(PromptBanditVectorEnv.__init__)
    source_names = _accepted(_build_source)[0] | set(SOURCE_KWARGS)  # build_source's own (curriculum)
    env_only = env_names - {"num_envs", "group_size"}
    if merged.get("task") is None:
        names = env_only | source_names
        unknown = [k for k in user if k not in names]
        if unknown:
            raise ConfigError(_unknown(label, unknown[0], names))
        return
    # A procedural task is cheap to build: its own option checks (and refusals) run now.
    source_kwargs = {k: v for k, v in merged.items() if k not in env_only}
    try:
        build_source(**source_kwargs)
    except RftgymError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{label}: the env refused its arguments: {exc}") from None


def check_advantage(config: RunConfig) -> None:
    """``algo.advantage`` (when the algorithm has one) names a registered estimator."""
    name = getattr(config.algo, "advantage", None)
    if name is None:
        return
    manager = get_manager()
    manager.lookup(manager.advantages, name)


def check_reward_options(rewards: Iterable[Any]) -> None:
    """Each reward whose implementation has ``check_options(**options)`` checks them now."""
    for reward in rewards:
        checker = getattr(getattr(reward, "_target", None), "check_options", None)
        if callable(checker):
            checker(**reward.options)


def offline_unless_hub_reachable(name_or_path: str) -> None:
    """A hub id with no network: tell huggingface_hub it is offline, so loading fails at once
    from the local cache instead of retrying for about a minute ("Retrying in 8s" × 5)."""
    import os
    import socket
    from urllib.parse import urlparse

    if name_or_path == EMBEDDED_MODEL or Path(name_or_path).expanduser().exists():
        return
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return
    except OSError:
        pass
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True  # read at call time; the variable only at import
    except ImportError:
        pass
