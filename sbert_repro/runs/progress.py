"""Where a command is, so that a Ctrl-C can say in one line where it stopped; and whether progress bars are shown."""

from __future__ import annotations

import os
import sys

_current = {"stage": "starting"}
_bars = {"shown": True}


def stage(description: str) -> None:
    """Record what the command is doing now ("loading the data", "training seed 42", ...)."""
    _current["stage"] = description


def current() -> str:
    return _current["stage"]


def show_bars(shown: bool) -> None:
    """Progress bars on (a terminal) or off (--quiet, or stderr not a terminal: a log file gets no carriage-return
    noise). Off reaches every library's tqdm bar too: tqdm reads TQDM_DISABLE for its default, and the Hugging Face
    libraries (hub downloads, datasets, transformers' loading) their own switch."""
    _bars["shown"] = shown
    if not shown:
        for variable in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
            os.environ[variable] = "1"
        # a library imported already (the command run from Python, twice) read its switch: set it directly
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()


def bars_shown() -> bool:
    """Whether this command shows progress bars (for a library call that takes the choice as an argument)."""
    return _bars["shown"]
