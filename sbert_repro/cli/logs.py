"""Where messages go: sbert-repro's own lines (progress, warnings, the one-line error) to the terminal; the libraries'
(transformers' load reports, sentence-transformers', datasets', huggingface_hub's and torch's warnings) to a log file,
so that they do not bury the line that says what went wrong. `--verbose` shows everything on the terminal instead.

The log file is the last run's of each command, `<log dir>/<command>.log` (`<command>.rank<N>.log` under torchrun):
$SBERT_REPRO_LOG_DIR, else $XDG_CACHE_HOME/sbert-repro/logs (~/.cache/sbert-repro/logs). Once the command ends,
messages go where they went before it (a notebook that runs a command keeps its own logging).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sbert_repro.runs.progress import for_terminal

FORMAT, DATE_FORMAT = "%(asctime)s %(name)s: %(message)s", "%H:%M:%S"
OURS = "sbert_repro"
# Libraries that print through a stderr handler of their own (transformers is switched through its own API).
OWN_HANDLERS = ("datasets", "huggingface_hub")


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


def show_on_terminal() -> None:
    """Our own lines at INFO, every library's at WARNING, on stderr (as logging.basicConfig: only where nothing
    else, a test runner say, has taken the root logger)."""
    root = logging.getLogger()
    if not root.handlers:
        terminal = logging.StreamHandler()
        terminal.setFormatter(_SafeFormatter(FORMAT, DATE_FORMAT))
        root.addHandler(terminal)
    root.setLevel(logging.WARNING)
    logging.getLogger(OURS).setLevel(logging.INFO)


@contextmanager
def library_messages(command: str, verbose: bool) -> Iterator[Path | None]:
    """While the block runs, the libraries' messages go to the command's log file (yielded), or with `verbose` to
    the terminal as they would go by themselves; afterwards, where they went before. Enter it once the command's
    inputs are checked: it imports transformers (seconds)."""
    if verbose:
        yield None
        return
    import transformers

    root = logging.getLogger()
    path = log_dir() / (f"{command}.rank{os.environ['RANK']}.log" if os.environ.get("RANK") else f"{command}.log")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        library_log = logging.FileHandler(path, mode="w", encoding="utf-8")  # opened now: a failure shows here
    except OSError:  # no writable cache: the libraries' lines stay on the terminal
        yield None
        return
    library_log.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    library_log.addFilter(lambda record: not _ours(record))
    only_ours = logging.Filter()
    only_ours.filter = _ours  # the terminal (our stream handlers on the root): our own lines only
    terminals = [handler for handler in root.handlers if type(handler) is logging.StreamHandler]
    own = {name: [handler for handler in logging.getLogger(name).handlers
                  if isinstance(handler, logging.StreamHandler)] for name in OWN_HANDLERS}
    transformers_propagates = transformers.logging.get_logger().propagate
    for handler in terminals:
        handler.addFilter(only_ours)
    for name, handlers in own.items():
        for handler in handlers:
            logging.getLogger(name).removeHandler(handler)
    transformers.logging.disable_default_handler()  # through the root, so that it reaches the file
    transformers.logging.enable_propagation()
    logging.captureWarnings(True)  # warnings.warn(...) from a library: a log record, to the file
    root.addHandler(library_log)
    try:
        yield path
    finally:
        root.removeHandler(library_log)
        library_log.close()
        logging.captureWarnings(False)
        transformers.logging.enable_default_handler()
        if not transformers_propagates:
            transformers.logging.disable_propagation()
        for name, handlers in own.items():
            for handler in handlers:
                logging.getLogger(name).addHandler(handler)
        for handler in terminals:
            handler.removeFilter(only_ours)
