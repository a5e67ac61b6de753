"""Where messages go: sbert-repro's own lines (progress, warnings, the one-line error) to the terminal; the libraries'
(transformers' load reports, sentence-transformers', datasets' and torch's warnings) to a log file, so that they do
not bury the line that says what went wrong. `--verbose` shows everything on the terminal instead.

The log file is the last run's of each command, `<log dir>/<command>.log`: $SBERT_REPRO_LOG_DIR, else
$XDG_CACHE_HOME/sbert-repro/logs (~/.cache/sbert-repro/logs). It is written only when a library says something.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sbert_repro.runs.progress import for_terminal

FORMAT, DATE_FORMAT = "%(asctime)s %(name)s: %(message)s", "%H:%M:%S"
OURS = "sbert_repro"


def log_dir() -> Path:
    """Where each command's library log is kept."""
    if os.environ.get("SBERT_REPRO_LOG_DIR"):
        return Path(os.environ["SBERT_REPRO_LOG_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "sbert-repro" / "logs"


def _ours(record: logging.LogRecord) -> bool:
    return record.name == OURS or record.name.startswith(OURS + ".")


class _SafeFormatter(logging.Formatter):
    """Each line as logging formats it, then safe to print (progress.for_terminal): paths and names are data."""

    def format(self, record: logging.LogRecord) -> str:
        return for_terminal(super().format(record))


class _Routed:
    """Marks the handlers and filters set here, so that a second command in one process replaces them."""


def show_on_terminal() -> None:
    """Our own lines at INFO, every library's at WARNING, on stderr (as logging.basicConfig: only where nothing
    else, a test runner say, has taken the root logger)."""
    root = logging.getLogger()
    if not root.handlers:
        terminal = logging.StreamHandler()
        terminal.setFormatter(_SafeFormatter(FORMAT, DATE_FORMAT))
        terminal.routed = _Routed
        root.addHandler(terminal)
    root.setLevel(logging.WARNING)
    logging.getLogger(OURS).setLevel(logging.INFO)


def route_library_messages(command: str, verbose: bool) -> Path | None:
    """Send the libraries' messages to the command's log file (returned), or with `verbose` to the terminal as
    they would go by themselves. Call once the command's inputs are checked: it imports transformers (seconds)."""
    import transformers

    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if getattr(handler, "routed", None) is _Routed]:
        for kept_out in [f for f in handler.filters if getattr(f, "routed", None) is _Routed]:
            handler.removeFilter(kept_out)
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    logging.captureWarnings(not verbose)  # warnings.warn(...) from a library: a log record, to the file
    if verbose:
        transformers.logging.disable_propagation()
        transformers.logging.enable_default_handler()
        return None
    # transformers writes to stderr through its own handler: through ours instead, so that it reaches the file
    transformers.logging.disable_default_handler()
    transformers.logging.enable_propagation()
    for handler in root.handlers:
        if getattr(handler, "routed", None) is _Routed:  # the terminal: our lines only
            only_ours = logging.Filter()
            only_ours.filter = _ours
            only_ours.routed = _Routed
            handler.addFilter(only_ours)
    path = log_dir() / f"{command}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        library_log = logging.FileHandler(path, mode="w", encoding="utf-8", delay=True)
    except OSError:  # no writable cache: the libraries' lines stay on the terminal
        return None
    library_log.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    library_log.addFilter(lambda record: not _ours(record))
    library_log.routed = _Routed
    root.addHandler(library_log)
    return path
