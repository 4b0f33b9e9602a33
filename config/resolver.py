"""The seam between pure config data and registered names.

``config`` never imports the plugins, the algorithms, the rewards or the envs. Whatever needs
a name turned into a thing (an algorithm's config class, a check that a reward or env id
exists, plugins a config lists) goes through a :class:`NameResolver`: passed to
:func:`rftgym.config.build_config`, or installed once by the package (``rftgym/__init__.py``
installs the composition root's, ``rftgym.runner.build.ROOT_NAMES``), so that
``rftgym.config.build_config`` keeps checking names for callers that import it directly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only
    from .schema import RunConfig


class NameResolver(Protocol):
    """What building a config needs from the registered names."""

    def load_plugins(self, specs: list[str]) -> None:
        """Load the plugins a config lists (they may provide the names it uses)."""

    def algo_config(self, name: str) -> type:
        """The config dataclass of algorithm ``name`` (an unknown name raises, with the closest)."""

    def check_names(self, config: "RunConfig") -> None:
        """Raise on an unknown reward name/option or env id, before any model loads."""


_installed: NameResolver | None = None


def install_resolver(resolver: NameResolver | None) -> None:
    """Make ``resolver`` the default of :func:`build_config` (None: configs stay pure data)."""
    global _installed
    _installed = resolver


def installed_resolver() -> NameResolver | None:
    """The resolver :func:`install_resolver` set, if any."""
    return _installed
