"""The plugin manager: built-ins first, then entry points (guarded, one at a time), then explicit plugins.

Every name rftgym knows (rewards, algorithms, env ids) arrives through the hooks of
:mod:`rftgym.plugins.hookspecs`; the built-in plugin uses the same hooks as a third party.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pluggy

from ..errors import PluginError
from . import hookspecs
from .registry import Registry

HOOKS = ("rftgym_register_rewards", "rftgym_register_algorithms", "rftgym_register_envs")
ENTRY_POINT_GROUP = "rftgym"
ALLOW_ENV = "RFTGYM_LOAD_PLUGINS"
STRICT_ENV = "RFTGYM_STRICT_PLUGINS"
BUILTIN = "rftgym.builtin"
IN_PROCESS = "in-process"


@dataclass
class PluginInfo:
    """What ``rftgym plugins`` reports about one plugin."""

    name: str
    source: str  # builtin | entry-point | module | file | in-process
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    rewards: list[str] = field(default_factory=list)
    algorithms: list[str] = field(default_factory=list)
    envs: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PluginManager:
    """Owns the pluggy manager and the three registries (rewards, algorithms, envs)."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.rewards = Registry("reward")
        self.algorithms = Registry("algorithm")
        self.envs = Registry("env")
        self.plugins: dict[str, PluginInfo] = {}
        self.strict = _strict_from_env()
        self._builtins_loaded = False
        self._entry_points_loaded = False
        self._lock = threading.RLock()

    # -- registration callbacks -------------------------------------------------------------
    def _register_callback(self, hook: str, owner: str) -> Callable[..., None]:
        if hook == "rftgym_register_rewards":
            return lambda name, obj: self.rewards.add(name, obj, owner)
        if hook == "rftgym_register_algorithms":
            return lambda name, cls: self.algorithms.add(name, cls, owner)

        def register_env(id: str, entry_point: Any = None, **kwargs: Any) -> None:
            import gymnasium

            self.envs.add(id, {"entry_point": entry_point, **kwargs}, owner)
            spec = gymnasium.envs.registry.get(id)
            if spec is not None and spec.entry_point == entry_point:
                return  # already registered by an earlier import of this same module
            gymnasium.register(id=id, entry_point=entry_point, **kwargs)

        return register_env

    def _forget(self, owner: str) -> None:
        for registry in (self.rewards, self.algorithms, self.envs):
            registry.remove_owner(owner)

    def _add_plugin(self, obj: Any, name: str, source: str, version: str | None = None) -> PluginInfo:
        """Register ``obj`` with pluggy and run its hooks, attributing every name to ``name``."""
        info = PluginInfo(name=name, source=source, version=version)
        try:
            if self.pm.has_plugin(name):
                raise PluginError(f"a plugin named {name!r} is already loaded")
            self.pm.register(obj, name=name)
        except Exception as exc:  # pluggy validates hook signatures here
            info.error = _one_line(exc)
            self.plugins[name] = info
            return info
        try:
            for hook in HOOKS:
                impls = [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin is obj]
                for impl in impls:
                    info.hooks.append(hook)
                    impl.function(register=self._register_callback(hook, name))
        except Exception as exc:
            self._forget(name)
            self.pm.unregister(obj)
            info.error = _one_line(exc)
            if os.environ.get("RFTGYM_DEBUG"):
                traceback.print_exc()
        info.rewards = self.rewards.names(name)
        info.algorithms = self.algorithms.names(name)
        info.envs = self.envs.names(name)
        self.plugins[name] = info
        return info

    def _report(self, info: PluginInfo, *, strict: bool) -> None:
        if info.error is None:
            return
        message = f"plugin {info.name!r} ({info.source}) failed: {info.error}"
        if strict:
            raise PluginError(message)
        print(f"rftgym: warning: {message}; continuing without it", file=sys.stderr)

    # -- loading ----------------------------------------------------------------------------
    def load_builtins(self) -> None:
        """Register everything rftgym ships (cheap: entry points are strings, imports are lazy)."""
        with self._lock:
            if self._builtins_loaded:
                return
            from . import builtin

            from .. import __version__

            info = self._add_plugin(builtin, BUILTIN, "builtin", __version__)
            if info.error:
                raise PluginError(f"built-in plugin failed: {info.error}")
            self._builtins_loaded = True

    def load_entry_points(self, strict: bool | None = None) -> None:
        """Load the ``rftgym`` entry-point group one plugin at a time; failures are isolated."""
        strict = self.strict if strict is None else strict
        with self._lock:
            self.load_builtins()
            if self._entry_points_loaded:
                return
            self._entry_points_loaded = True
            allow = os.environ.get(ALLOW_ENV)
            allowed = None if allow is None else {a.strip() for a in allow.split(",") if a.strip()}
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                dist = getattr(ep, "dist", None)
                dist_name = getattr(dist, "name", None)
                if allowed is not None and ep.name not in allowed and dist_name not in allowed:
                    continue
                if ep.name in self.plugins:
                    continue
                version = getattr(dist, "version", None)
                try:
                    obj = ep.load()
                except Exception as exc:
                    info = PluginInfo(name=ep.name, source="entry-point", version=version, error=_one_line(exc))
                    self.plugins[ep.name] = info
                else:
                    info = self._add_plugin(obj, ep.name, "entry-point", version)
                self._report(info, strict=strict)

    def load_plugin(self, spec: str) -> PluginInfo:
        """Load an explicit plugin: a dotted module name or a path to a ``.py`` file.

        An explicitly requested plugin that fails is always an error.
        """
        with self._lock:
            self.load_builtins()
            path = Path(spec)
            if spec.endswith(".py") or path.is_file():
                if not path.is_file():
                    raise PluginError(f"--plugin {spec!r}: no such file")
                name, source = str(path.resolve()), "file"
                if name in self.plugins and self.plugins[name].error is None:
                    return self.plugins[name]
                try:
                    mod_name = f"rftgym_plugin_{path.stem}_{abs(hash(name)) & 0xFFFFFF:x}"
                    mspec = importlib.util.spec_from_file_location(mod_name, path)
                    module = importlib.util.module_from_spec(mspec)
                    sys.modules[mod_name] = module
                    mspec.loader.exec_module(module)
                except Exception as exc:
                    raise PluginError(f"--plugin {spec!r} failed to import: {_one_line(exc)}") from exc
            else:
                name, source = spec, "module"
                if name in self.plugins and self.plugins[name].error is None:
                    return self.plugins[name]
                try:
                    module = importlib.import_module(spec)
                except Exception as exc:
                    raise PluginError(f"--plugin {spec!r} failed to import: {_one_line(exc)}") from exc
            info = self._add_plugin(module, name, source, getattr(module, "__version__", None))
            if info.error:
                raise PluginError(f"--plugin {spec!r} failed: {info.error}")
            return info

    def register_in_process(self, kind: str, name: str, obj: Any) -> None:
        """``rftgym.register_reward`` / ``register_algorithm``: same registry, same duplicate rule."""
        self.load_builtins()
        registry = {"reward": self.rewards, "algorithm": self.algorithms}[kind]
        registry.add(name, obj, IN_PROCESS)
        info = self.plugins.setdefault(IN_PROCESS, PluginInfo(name=IN_PROCESS, source="in-process"))
        info.rewards = self.rewards.names(IN_PROCESS)
        info.algorithms = self.algorithms.names(IN_PROCESS)

    def lookup(self, registry: Registry, name: str) -> Any:
        """Get ``name``; if unknown, load third-party plugins once and retry."""
        self.load_builtins()
        if name not in registry and not self._entry_points_loaded:
            self.load_entry_points()
        return registry.get(name)


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager


def reset_manager() -> None:
    """Forget all loaded plugins (for tests). Gymnasium's env registry is left as it is."""
    global _manager
    with _manager_lock:
        _manager = None
