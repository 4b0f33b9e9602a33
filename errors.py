"""Exceptions that the CLI turns into one clear line on stderr."""
from __future__ import annotations

import difflib
from typing import Iterable


class RftgymError(Exception):
    """A user-facing error: its message is one line naming the culprit and what is accepted."""


class UnknownNameError(RftgymError, KeyError):
    """A name (reward, algorithm, env, config key) that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class PluginError(RftgymError):
    """A plugin failed to load or misbehaved (raised in strict mode)."""


class ConfigError(RftgymError, ValueError):
    """An invalid configuration key or value."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """Return the closest match to ``name`` among ``choices`` (or None)."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """One line: the unknown name, the closest match, and what exists."""
    choices = sorted(choices)
    hint = closest(name, choices)
    did_you_mean = f"; did you mean {hint!r}?" if hint else ""
    listing = ", ".join(choices) if choices else "(none registered)"
    return f"unknown {kind} {name!r}{did_you_mean} available: {listing}"
