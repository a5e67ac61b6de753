"""The one error type users see: bad input, bad options, unreachable sources.

The CLI prints its message as a single line and exits with status 2, without a traceback, so the
message must name the file, row or option at fault and say what to do about it.
"""

from __future__ import annotations


class UsageError(Exception):
    """Something the user can fix: a file, a row, an option, a model path."""
