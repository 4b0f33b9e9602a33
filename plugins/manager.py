"""The plugin manager: built-ins first, then entry points (guarded, one at a time), then explicit plugins.

Every name rftgym knows (rewards, algorithms, env ids) arrives through the hooks of
:mod:`rftgym.plugins.hookspecs`; the built-in plugin uses the same hooks as a third party.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
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

HOOKS = ("rftgym_register_rewards", "rftgym_register_algorithms", "rftgym_register_advantages",
         "rftgym_register_envs")
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
    advantages: list[str] = field(default_factory=list)
    envs: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "status": "ok" if self.error is None else "failed"}


def _strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _debug() -> bool:
    return os.environ.get("RFTGYM_DEBUG", "") not in ("", "0")


def _normalize(name: str) -> str:
    """Distribution names compare case-insensitively with ``-``, ``_`` and ``.`` equal (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _refuse_shadowed_file(spec: str) -> None:
    """``--plugin NAME`` with ``NAME.py`` in the working directory, when ``NAME`` imports (or is
    loaded as) something else: say which is which instead of silently picking one."""
    local = Path.cwd() / (spec.replace(".", os.sep) + ".py")
    if not local.is_file():
        return
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError):
        found = None
    origin = getattr(found, "origin", None)
    if origin and Path(origin).resolve() == local.resolve():
        return
    other = f"the installed module at {origin}" if origin else "no importable module (the file is not on sys.path)"
    raise PluginError(f"--plugin {spec!r} is ambiguous: ./{local.name} is in this directory, but the name {spec!r} "
                      f"resolves to {other}; pass --plugin ./{local.name} to load the file")


class PluginManager:
    """Owns the pluggy manager and the registries (rewards, algorithms, advantage estimators, envs)."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.rewards = Registry("reward")
        self.algorithms = Registry("algorithm")
        self.advantages = Registry("advantage estimator")
        self.envs = Registry("env")
        self.plugins: dict[str, PluginInfo] = {}
        self.strict = False  # set True to make failures errors; RFTGYM_STRICT_PLUGINS is read at load time
        self._gym_ids: dict[str, str] = {}  # env id -> owner, for ids this manager added to Gymnasium
        self._builtins_loaded = False
        self._entry_points_loaded = False
        self._lock = threading.RLock()

    # -- registration callbacks -------------------------------------------------------------
    def _register_callback(self, hook: str, owner: str) -> Callable[..., None]:
        if hook == "rftgym_register_rewards":
            def register_reward(name: str, obj: Any, *, group: bool = False) -> None:
                if not isinstance(group, bool):
                    raise PluginError(f"{owner}: reward {name!r}: group must be True or False, got {group!r}")
                self.rewards.add(name, obj, owner, group=group)

            return register_reward
        if hook == "rftgym_register_algorithms":
            return lambda name, cls: self.algorithms.add(name, cls, owner)
        if hook == "rftgym_register_advantages":
            return lambda name, fn: self.advantages.add(name, fn, owner)

        def register_env(id: str, entry_point: Any = None, *, tasks: Any = None, **kwargs: Any) -> None:
            # ``tasks``: rftgym's own extra, not Gymnasium's: a callable (or "module:function")
            # listing the names the env's ``tasks=`` option accepts, resolved only when listed.
            import gymnasium

            self.envs.add(id, {"entry_point": entry_point, **kwargs}, owner, tasks=tasks)
            spec = gymnasium.envs.registry.get(id)
            if spec is not None and spec.entry_point == entry_point:
                return  # already registered by an earlier import of this same module
            gymnasium.register(id=id, entry_point=entry_point, **kwargs)
            self._gym_ids[id] = owner

        return register_env

    def _forget(self, owner: str) -> None:
        """Drop every name ``owner`` registered, including its env ids in Gymnasium's registry."""
        for registry in (self.rewards, self.algorithms, self.advantages, self.envs):
            registry.remove_owner(owner)
        self.unregister_gym_ids(owner)

    def unregister_gym_ids(self, owner: str | None = None) -> None:
        """Remove from Gymnasium the ids this manager added (all owners but the built-in one if None).

        Gymnasium's registry is process-global and outlives a manager, so a failed or reset
        plugin would otherwise leave ``gymnasium.make`` working for an id nobody provides.
        """
        import gymnasium

        for id, who in list(self._gym_ids.items()):
            if (owner is None and who != BUILTIN) or who == owner:
                gymnasium.envs.registry.pop(id, None)
                del self._gym_ids[id]

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
            # A misspelt hook (``rftgym_register_reward``) would otherwise be silently ignored.
            self.pm.check_pending()
        except Exception as exc:
            self.pm.unregister(obj)
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
            if _debug():
                traceback.print_exc()
        info.rewards = self.rewards.names(name)
        info.algorithms = self.algorithms.names(name)
        info.advantages = self.advantages.names(name)
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
        strict = (self.strict or _strict_from_env()) if strict is None else strict
        with self._lock:
            self.load_builtins()
            if self._entry_points_loaded:
                return
            self._entry_points_loaded = True
            allow = os.environ.get(ALLOW_ENV)
            allowed = None if allow is None else {a.strip() for a in allow.split(",") if a.strip()}
            # Sorted, so which of two clashing plugins loads first does not depend on directory order.
            eps = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                         key=lambda e: (_normalize(getattr(getattr(e, "dist", None), "name", "") or ""), e.name))
            for ep in eps:
                dist = getattr(ep, "dist", None)
                dist_name = getattr(dist, "name", None)
                if allowed is not None and ep.name not in allowed and not (
                        dist_name and _normalize(dist_name) in {_normalize(a) for a in allowed}):
                    continue
                if ep.name in self.plugins:
                    continue
                version = getattr(dist, "version", None)
                try:
                    obj = ep.load()
                except Exception as exc:  # reported below (or raised in strict mode), never fatal here
                    if _debug():
                        traceback.print_exc()
                    error = _one_line(exc)
                    if dist_name:
                        error = f"{error} (entry point {ep.value!r} of {dist_name})"
                    info = PluginInfo(name=ep.name, source="entry-point", version=version, error=error)
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
            # A module name never contains a path separator; anything else must be a .py file.
            if spec.endswith(".py") or "/" in spec or os.sep in spec:
                if not path.is_file():
                    raise PluginError(f"--plugin {spec!r}: no such file")
                if path.suffix != ".py":
                    raise PluginError(f"--plugin {spec!r}: a plugin file must end in .py")
                name, source = str(path.resolve()), "file"
                if name in self.plugins and self.plugins[name].error is None:
                    return self.plugins[name]
                mod_name = f"rftgym_plugin_{path.stem}_{abs(hash(name)) & 0xFFFFFF:x}"
                try:
                    mspec = importlib.util.spec_from_file_location(mod_name, path)
                    module = importlib.util.module_from_spec(mspec)
                    sys.modules[mod_name] = module
                    mspec.loader.exec_module(module)
                except Exception as exc:
                    sys.modules.pop(mod_name, None)  # a retry must re-execute the file, not reuse a half module
                    raise PluginError(f"--plugin {spec!r} failed to import: {_one_line(exc)}") from exc
            else:
                name, source = spec, "module"
                _refuse_shadowed_file(spec)
                if name in self.plugins and self.plugins[name].error is None:
                    return self.plugins[name]
                try:
                    module = importlib.import_module(spec)
                except ModuleNotFoundError as exc:
                    hint = " (is it installed, or on PYTHONPATH? a file needs its .py path)" if exc.name == spec.split(".")[0] else ""
                    raise PluginError(f"--plugin {spec!r} failed to import: {_one_line(exc)}{hint}") from exc
                except Exception as exc:
                    raise PluginError(f"--plugin {spec!r} failed to import: {_one_line(exc)}") from exc
            loaded_as = self.pm.get_name(module)
            if loaded_as is not None and loaded_as in self.plugins:
                return self.plugins[loaded_as]  # already loaded, e.g. through its entry point
            info = self._add_plugin(module, name, source, getattr(module, "__version__", None))
            if info.error:
                raise PluginError(f"--plugin {spec!r} failed: {info.error}")
            return info

    def register_in_process(self, kind: str, name: str, obj: Any, **meta: Any) -> None:
        """``rftgym.register_reward`` / ``register_algorithm`` / ``register_advantage``: same
        registry, same duplicate rule (``meta``: e.g. a reward's ``group=True``)."""
        self.load_builtins()
        registry = {"reward": self.rewards, "algorithm": self.algorithms, "advantage": self.advantages}[kind]
        if not isinstance(meta.get("group", False), bool):
            raise PluginError(f"register_reward({name!r}): group must be True or False, got {meta['group']!r}")
        registry.add(name, obj, IN_PROCESS, **meta)
        info = self.plugins.setdefault(IN_PROCESS, PluginInfo(name=IN_PROCESS, source="in-process"))
        info.rewards = self.rewards.names(IN_PROCESS)
        info.algorithms = self.algorithms.names(IN_PROCESS)
        info.advantages = self.advantages.names(IN_PROCESS)

    def env_tasks(self, owner: str) -> dict[str, list[str] | str]:
        """For each env id of plugin ``owner`` that declared ``tasks=``: the task names it
        accepts, or one line saying why they cannot be listed (e.g. a missing extra)."""
        from .registry import _import_ref

        out: dict[str, list[str] | str] = {}
        for env_id in self.envs.names(owner):
            ref = self.envs.meta(env_id).get("tasks")
            if ref is None:
                continue
            try:
                fn = _import_ref(ref, f"task list of env {env_id!r}") if isinstance(ref, str) else ref
                out[env_id] = sorted(str(name) for name in fn())
            except Exception as exc:  # listing must not take the command down
                out[env_id] = _one_line(exc)
        return out

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
    """Forget all loaded plugins (for tests).

    Env ids that third-party plugins added are removed from Gymnasium's registry as well; the
    built-in ids stay (``import rftgym`` promises them, and re-registering them is a no-op).
    """
    global _manager
    with _manager_lock:
        if _manager is not None:
            _manager.unregister_gym_ids()
        _manager = None
