"""The reward protocol (TRL's signature) and the ready-to-call wrapper ``get_reward`` returns.

A reward is called with keyword arguments, exactly as TRL's ``GRPOTrainer`` calls it::

    fn(prompts=[...], completions=[...], **columns) -> list[float | None]

``columns`` are the dataset's other columns, one value per completion; the gold answer is
always the column ``answer``. ``None`` means "not applicable" for that sample.

A **group reward** (registered with ``group=True``) has the same signature but is called once
per group — the G completions of one prompt, in sampling order, with their columns — and
returns G scores. :class:`Reward` does the splitting, so a batch of several groups can be
passed to it like to any reward (with ``group_ids=``, or grouped by runs of equal prompts).
"""
from __future__ import annotations

import functools
import inspect
import threading
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from ..errors import ConfigError, RftgymError, closest
from ..plugins.manager import get_manager


@runtime_checkable
class RewardFn(Protocol):
    """Anything callable as ``fn(prompts=..., completions=..., **columns) -> list[float | None]``."""

    def __call__(self, *, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]: ...


class Reward:
    """A named, ready reward: lazy set-up, positional or keyword calls, ``close()``.

    ``target`` is either a function (options are bound as keyword arguments) or a class
    (instantiated with the options on first use; its ``setup()`` is then called if present).
    With ``group=True`` the target scores one group per call (see :func:`split_groups`).
    """

    def __init__(self, name: str, target: Any, options: dict[str, Any] | None = None, group: bool = False) -> None:
        self.name = name
        self.__name__ = name  # TRL logs rewards by __name__
        self.options = dict(options or {})
        self.group = bool(group)
        self._target = target
        self._impl: Callable[..., Any] | None = None
        self._lock = threading.Lock()
        if inspect.isclass(target):
            _check_options(name, target.__init__, self.options, skip_first=True)
        elif callable(target):
            _check_options(name, target, self.options, skip_first=False)
        else:
            raise RftgymError(f"reward {name!r} is not callable (got {type(target).__name__})")

    @property
    def impl(self) -> Callable[..., Any]:
        """The underlying callable, set up on first access."""
        if self._impl is None:
            with self._lock:
                if self._impl is None:
                    if inspect.isclass(self._target):
                        impl = self._target(**self.options)
                        if hasattr(impl, "setup"):
                            impl.setup()
                    else:
                        impl = functools.partial(self._target, **self.options) if self.options else self._target
                    self._impl = impl
        return self._impl

    def __call__(self, prompts: Sequence[str] | None = None, completions: Sequence[str] | None = None,
                 *, group_ids: Sequence[int] | None = None, **columns: Any) -> list[float | None]:
        """Score a batch. ``group_ids`` (one per completion) says which completions share a
        prompt; only a group reward uses it (default: runs of equal consecutive prompts)."""
        if completions is None:
            raise RftgymError(f"reward {self.name!r} needs completions=[...]")
        if prompts is None:
            prompts = [""] * len(completions)
        if not self.group:
            return self.impl(prompts=list(prompts), completions=list(completions), **columns)
        return self._call_groups(list(prompts), list(completions), group_ids, columns)

    def _call_groups(self, prompts: list, completions: list, group_ids: Sequence[int] | None,
                     columns: dict[str, Any]) -> list[Any]:
        n = len(completions)
        for key, values in columns.items():
            if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__") or len(values) != n:
                raise RftgymError(f"group reward {self.name!r}: column {key!r} needs one value per completion ({n})")
        out: list[Any] = [None] * n
        impl = self.impl
        for g, indices in enumerate(split_groups(n, group_ids, prompts)):
            raw = impl(prompts=[prompts[i] for i in indices], completions=[completions[i] for i in indices],
                       **{k: [v[i] for i in indices] for k, v in columns.items()})
            listlike = raw is not None and not isinstance(raw, (str, bytes, Mapping)) and hasattr(raw, "__len__")
            if not listlike or len(raw) != len(indices):
                got = f"{len(raw)} values" if listlike else f"a {type(raw).__name__}"
                raise RftgymError(f"group reward {self.name!r} returned {got} for group {g} of "
                                  f"{len(indices)} completions; a group reward returns one score per completion")
            for i, value in zip(indices, raw):
                out[i] = value
        return out

    def close(self) -> None:
        """Release resources (worker pools, models); the reward can be used again afterwards."""
        with self._lock:
            impl, self._impl = self._impl, None
        if impl is not None and hasattr(impl, "close"):
            impl.close()

    def __getattr__(self, item: str) -> Any:
        # Expose the implementation's extras (e.g. a reward model's ``update_stats``) without
        # forcing set-up for dunder/private look-ups made by copy/pickle.
        if item.startswith("_"):
            raise AttributeError(item)
        return getattr(self.impl, item)

    def __repr__(self) -> str:
        return f"Reward({self.name!r}, options={self.options!r})"


def split_groups(n: int, group_ids: Sequence[int] | None, prompts: Sequence[Any]) -> list[list[int]]:
    """Indices of each group, groups in order of first appearance, indices ascending.

    ``group_ids`` (one per completion; need not be contiguous) decides; without them, a group
    is a run of equal consecutive prompts (how ``make_vec`` and TRL lay a batch out).
    """
    if group_ids is None:
        groups: list[list[int]] = []
        for i in range(n):
            if groups and prompts[i] == prompts[i - 1]:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups
    ids = list(group_ids)
    if len(ids) != n:
        raise RftgymError(f"got {len(ids)} group ids for {n} completions; pass one group id per completion")
    by_id: dict[Any, list[int]] = {}
    for i, gid in enumerate(ids):
        key = gid.item() if hasattr(gid, "item") else gid
        by_id.setdefault(key, []).append(i)
    return list(by_id.values())


def _check_options(name: str, fn: Callable[..., Any], options: dict[str, Any], skip_first: bool) -> None:
    """Reject an unknown option now, naming it and the accepted ones, instead of at first call;
    for a class reward, also a required constructor option that is missing."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return
    if skip_first and params:
        params = params[1:]
    if options and not any(p.kind is p.VAR_KEYWORD for p in params):
        _check_unknown(name, params, options)
    required = [p.name for p in params if p.default is p.empty and p.name not in options
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if skip_first and required:  # a class reward: its constructor needs these now
        raise ConfigError(f"reward {name!r} needs option {required[0]!r} "
                          f"(rewards[i].options.{required[0]}); required: {', '.join(required)}")


def _check_unknown(name: str, params: list, options: dict[str, Any]) -> None:
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in {"prompts", "completions"}]
    for key in options:
        if key not in accepted:
            hint = closest(key, accepted)
            did = f"; did you mean {hint!r}?" if hint else ""
            raise ConfigError(f"reward {name!r} has no option {key!r}{did} accepted: {', '.join(accepted) or '(none)'}")


def reward_by_name(name: str, **options: Any) -> Reward:
    """A ready :class:`Reward` for the registered ``name`` (``rftgym.get_reward`` is this).

    The look-up goes down to the plugin registry, never up to ``api`` or the runner: a leaf that
    is given a bare name (``RewardPipeline(["math"])``) resolves it here.
    """
    manager = get_manager()
    target = manager.lookup(manager.rewards, name)
    return Reward(name, target, options, group=manager.rewards.meta(name).get("group", False))
