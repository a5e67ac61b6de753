"""What the terminal shows: where a command is, so that a Ctrl-C can say in one line where it stopped; whether
progress bars are shown; and text from anywhere (a document, a folder's or a model's name) made safe to print.

A name or a document is data from anywhere: an escape sequence in it could recolour, retitle or rewrite the user's
terminal, and a bidirectional override could make a line read other than it is. Such characters print as U+FFFD,
tabs and line breaks as spaces (one line stays one line).
"""

from __future__ import annotations

import os
import re
import sys

# C0 and C1 control characters and DEL, and the bidirectional embeddings, overrides and isolates.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
LINE_BREAKS = re.compile("[\t\n\r\x0b\x0c\x85\u2028\u2029]")


def for_terminal(text: str) -> str:
    """`text` safe to print on one line of a terminal."""
    return UNSAFE.sub("\ufffd", LINE_BREAKS.sub(" ", text))


def terminal_lines(text: str) -> str:
    """Lines of `text` (a table, say) each safe to print, the line breaks between them kept."""
    return "\n".join(for_terminal(line) for line in text.split("\n"))

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
