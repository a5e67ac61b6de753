"""Where a command is, so that a Ctrl-C can say in one line where it stopped."""

from __future__ import annotations

_current = {"stage": "starting"}


def stage(description: str) -> None:
    """Record what the command is doing now ("loading the data", "training seed 42", ...)."""
    _current["stage"] = description


def current() -> str:
    return _current["stage"]
