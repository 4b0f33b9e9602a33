"""Name → implementation tables with one duplicate rule and one unknown-name message."""
from __future__ import annotations

from typing import Any, Iterator

from ..errors import PluginError, UnknownNameError, unknown_name_message


def _import_ref(ref: str, what: str) -> Any:
    """Import ``"package.module:attr"`` (lazy references keep ``import rftgym`` cheap)."""
    import importlib

    module_name, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise PluginError(f"{what} could not be loaded from {ref!r}: {type(exc).__name__}: {exc}") from exc
    return obj


class Registry:
    """A table of ``name -> object`` that remembers which plugin registered each name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._owners: dict[str, str] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def add(self, name: str, obj: Any, owner: str, **meta: Any) -> None:
        """Add ``name``; a name already taken by another registration is an error naming both.

        ``meta`` are facts the registration declares about the object (a reward's ``group``)."""
        if not isinstance(name, str) or not name:
            raise PluginError(f"{owner}: {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._items:
            if self._owners[name] == owner and self._items[name] is obj:
                return  # idempotent re-registration (e.g. the root module imported twice)
            raise PluginError(
                f"duplicate {self.kind} name {name!r}: registered by {self._owners[name]!r} and by {owner!r}"
            )
        self._items[name] = obj
        self._owners[name] = owner
        self._meta[name] = dict(meta)

    def remove_owner(self, owner: str) -> None:
        """Forget every name that ``owner`` registered (used when its hook fails half-way)."""
        for name in [n for n, o in self._owners.items() if o == owner]:
            del self._items[name], self._owners[name]
            self._meta.pop(name, None)

    def get(self, name: str) -> Any:
        """The object registered as ``name``; a ``"module:attr"`` string is imported on first get."""
        if name not in self._items:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._items))
        obj = self._items[name]
        if isinstance(obj, str) and ":" in obj:
            obj = self._items[name] = _import_ref(obj, f"{self.kind} {name!r} of plugin {self._owners[name]!r}")
        return obj

    def meta(self, name: str) -> dict[str, Any]:
        """What the registration of ``name`` declared (empty when nothing)."""
        return dict(self._meta.get(name, {}))

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self, owner: str | None = None) -> list[str]:
        return sorted(n for n, o in self._owners.items() if owner is None or o == owner)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
