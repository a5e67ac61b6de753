"""What ends a script (`sbert-repro`, scripts/make_tables.py) short of success: one line on stderr and its exit status.

Bad input (a UsageError) and a write that failed end with status 2, a Ctrl-C with 130 (a SIGTERM likewise, with
143), output into a pipe whose reader has gone with 141 and no line; none prints a traceback (the commands' own
cleanup has already run on the way out).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Callable

from sbert_repro.errors import UsageError
from sbert_repro.runs.folders import WriteFailed, write_failed
from sbert_repro.runs.progress import for_terminal

# The OSErrors that say a disk is full or read-only, which a user fixes the same way wherever the write was.
NO_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
BROKEN_PIPE = 141  # a shell's status for a command its pipe's reader left (128 + SIGPIPE)
TERMINATED = 143  # 128 + SIGTERM, as a shell reports a command a SIGTERM ended


class Terminated(KeyboardInterrupt):
    """A SIGTERM (`kill`, a batch scheduler's time limit, torchrun stopping the other ranks), handled as a Ctrl-C
    is: the commands' cleanup runs on the way out, and one line says where it stopped."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated()


def exit_status(prog: str, body: Callable[[], object], remedy: Callable[[], str], interrupted: Callable[[], str],
                every_os_error: bool = False) -> int:
    """Run `body`; 0 when it returns, else the one line of what stopped it and 2 or 130.

    `remedy()` ends a failed write's line (what to do once the disk has room or the folder is writable);
    `interrupted()` is a Ctrl-C's line after `prog: `. An OSError other than a full or read-only disk is raised as
    it is unless `every_os_error` (a script whose only OSErrors are writes)."""
    # Python's default for SIGTERM ends the process at once, with no cleanup and no line.
    previous = (signal.signal(signal.SIGTERM, _terminated)
                if threading.current_thread() is threading.main_thread() else None)
    try:
        body()
    except UsageError as error:
        if isinstance(error, WriteFailed):  # what to do next: continue the run, or run the command again
            error = error.with_remedy(remedy())
        print(f"{prog}: error: {for_terminal(str(error))}", file=sys.stderr)  # names in it are data
        return 2
    except BrokenPipeError:
        # What reads the output stopped (`| head -1`): quiet, as the shell's own tools are. stdout goes to /dev/null
        # so that the interpreter's flush at exit does not fail on the closed pipe too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except OSError as error:
        # EACCES, say, may be a read: not ours to word as a failed write.
        if not every_os_error and error.errno not in NO_WRITE:
            raise
        print(f"{prog}: error: {for_terminal(str(write_failed(error).with_remedy(remedy())))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        # On a line of its own: a progress bar may have been cut off mid-line.
        print(f"\n{prog}: {for_terminal(interrupted())}", file=sys.stderr)
        return TERMINATED if isinstance(stop, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
