"""Output folders that are never half-replaced and never written by two processes at once.

- One writer per folder: a command holds an exclusive lock on `.<name>.lock` beside its output folder (beside,
  not inside: the folder itself may be swapped while the lock is held). The lock file holds the writer's pid, so
  a second writer is told who has the folder. The kernel drops the lock when its process dies, however it dies.
- Replace on success only: a replacement is built in `.<name>.staging` beside the target and swapped in by two
  renames at the very end; until then the previous folder is untouched. Leftovers of a killed swap are tidied
  (the previous folder put back, the unfinished one deleted) the next time a command takes the lock.
- A folder named through a symbolic link is the folder the link points at: its lock, staging folder and swap are
  the real folder's, so two commands that reach one folder by different names share one lock, and a replacement
  replaces the link's target, leaving the link as it was.
- `kill_point(step)`: a test hook. With SBERT_REPRO_KILL_AT=<step> the process sends itself SIGKILL at that
  step (SBERT_REPRO_KILL_AT=<step>:INT sends SIGINT, a Ctrl-C), so tests can interrupt a run at a chosen place
  instead of racing a timer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sbert_repro.errors import UsageError
from sbert_repro.runs import progress

KILL_AT = "SBERT_REPRO_KILL_AT"


def kill_point(step: str) -> None:
    """Stop here, as a kill or a Ctrl-C would, when SBERT_REPRO_KILL_AT names this step (tests only)."""
    wanted, _, signal_name = os.environ.get(KILL_AT, "").partition(":")
    if wanted == step:
        signal.raise_signal(getattr(signal, f"SIG{signal_name or 'KILL'}"))


def real_folder(target: Path) -> Path:
    """`target` with every symbolic link on its way resolved: the folder a lock and a replacement are about."""
    return Path(os.path.realpath(target))


def _beside(target: Path, suffix: str) -> Path:
    # Resolved first: `--output-dir .` or `runs/x/..` name a folder too, and it is the parent that holds these; a
    # link and its target name one folder, with one lock.
    folder = real_folder(target)
    return folder.with_name(f".{folder.name}.{suffix}")


def lock_path(target: Path) -> Path:
    return _beside(target, "lock")


def staging_path(target: Path) -> Path:
    """Where a replacement of `target` is built (one at a time: its writer holds target's lock)."""
    return _beside(target, "staging")


def _old_path(target: Path) -> Path:
    return _beside(target, "old")


def interrupted_swap_hint(target: Path) -> str:
    """Where `target` is missing because a replacement was killed between its two renames (swap_in), what the
    user can do: the previous folder waits beside it, as .NAME.old. Empty otherwise."""
    old = _old_path(target)
    if Path(target).exists() or not old.is_dir():
        return ""
    return (f"; an interrupted --overwrite moved the previous folder to {old}: run that command again (it puts the "
            f"folder back first), or rename {old.name} back to {real_folder(target).name}")


def _busy(target: Path, option: str, pid: str) -> UsageError:
    return UsageError(f"{option} {target}: another process (pid {pid or 'unknown'}) is writing to it; wait for it "
                      "to finish, or choose another folder")


def check_not_busy(target: Path, option: str) -> None:
    """Refuse early a folder another process is writing. If a replacement was killed between its two renames,
    put the previous folder back first, so that the checks that follow see it."""
    try:
        fd = os.open(lock_path(target), os.O_RDONLY)
    except OSError:
        fd = None  # no lock file: nobody is writing it
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(target, option, os.pread(fd, 32, 0).decode(errors="replace").strip()) from None
        finally:
            os.close(fd)
    if _old_path(target).exists():
        with locked(target, option):
            tidy(target)


@contextmanager
def locked(target: Path, option: str) -> Iterator[None]:
    """Hold `target`'s write lock, or refuse with one line naming the process that holds it."""
    path = lock_path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                raise _busy(target, option, pid) from None
            # The holder we raced with deletes the file before unlocking it: if the file at `path` is not the one
            # we locked, a third process may already hold a new one, so lock that instead.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as error:
        raise UsageError(f"{option} {target}: cannot create it ({error.strerror}); choose a writable folder") from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking, so no process locks a file that is about to go
        os.close(fd)


def tidy(target: Path) -> None:
    """Undo what a killed replacement of `target` left (call with the lock held)."""
    target, old = real_folder(target), _old_path(target)
    if old.exists():
        if target.exists():
            shutil.rmtree(old)  # killed after the swap: the old folder was on its way out
        else:
            os.rename(old, target)  # killed between the two renames: the previous folder goes back
    shutil.rmtree(staging_path(target), ignore_errors=True)  # an unfinished replacement is worth nothing


def fresh_staging(target: Path, option: str) -> Path:
    """An empty staging folder for a replacement of `target` (call with the lock held)."""
    tidy(target)
    staging = staging_path(target)
    try:
        staging.mkdir(parents=True)
    except OSError as error:
        raise UsageError(f"{option} {target}: cannot write beside it ({error.strerror}); "
                         "choose a writable folder") from None
    return staging


@contextmanager
def removed_on_failure(folder: Path) -> Iterator[None]:
    """Delete `folder` if the block fails or is interrupted: an unfinished replacement is debris."""
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def swap_in(staging: Path, target: Path) -> None:
    """Put the finished `staging` folder in `target`'s place: rename the old one away, the new one in, then
    delete the old one. Killed in between, `tidy` puts the old one back."""
    progress.stage(f"replacing {target}")
    kill_point("before-swap")
    target, old = real_folder(target), _old_path(target)  # a link stays; the folder it points at is replaced
    try:
        if target.exists():
            os.rename(target, old)
        kill_point("mid-swap")
        os.rename(staging, target)
    except BaseException:
        tidy(target)  # interrupted between the renames: the previous folder goes back at once
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def writing(target: Path, option: str, replace: bool, check: Callable[[], None] | None = None) -> Iterator[Path]:
    """Hold `target`'s lock and yield the absolute folder to write into: with `replace`, a staging folder that is
    swapped in when the block succeeds (and deleted when it does not); otherwise `target` itself, created if
    needed. `check` runs again under the lock, as another process may have written `target` since the caller
    checked it."""
    with locked(target, option):
        if check is not None:
            check()
        if replace:
            staging = fresh_staging(target, option)
            with removed_on_failure(staging):
                yield staging.resolve()
                swap_in(staging, target)
            return
        tidy(target)
        yield make_dir(target, option)


def make_dir(folder: Path, option: str) -> Path:
    """Create `folder` (and its parents) if needed, or refuse in one line; returns its absolute path."""
    real = real_folder(folder)  # a link to a folder not yet made: the folder is made where the link points
    try:
        real.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{option} {folder}: cannot create it ({error.strerror}); choose a writable folder") from None
    return real


# What a write failure means to the user, and what to do about it; other errnos are given in the system's words.
WRITE_FAILURES = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                  errno.EFBIG: "the file is larger than this system allows",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "no permission to write there",
                  errno.EPERM: "no permission to write there"}
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class WriteFailed(UsageError):
    """A file a command writes could not be written. What to do next depends on the command (continue it with
    --resume, or run it again), so the message ends with a `remedy` the command line may replace."""

    def __init__(self, where: Path | str, reason: str, no_room: bool, remedy: str | None = None) -> None:
        self.where, self.reason, self.no_room = where, reason, no_room
        self.fix = "free some space" if no_room else "make it writable or choose another folder"
        super().__init__(f"{where}: cannot write it ({reason}); {remedy or self.fix + ', then run the command again'}")

    def with_remedy(self, then: str) -> WriteFailed:
        """The same failure, ending with '<fix>, then <then>'."""
        return WriteFailed(self.where, self.reason, self.no_room, f"{self.fix}, then {then}")


def write_failed(error: OSError, target: Path | None = None) -> WriteFailed:
    """One line for an OSError met while writing `target` (else the file the error names)."""
    reason = WRITE_FAILURES.get(error.errno, error.strerror or type(error).__name__)
    return WriteFailed(target or error.filename or "an output file", reason, error.errno in NO_ROOM)


# How torch's checkpoint writer (its zip writer fails with a RuntimeError, no errno) and safetensors' (an error
# naming the OS error) report a write that failed.
_TORCH_WRITE_FAILED = re.compile(r"inline_container|PytorchStreamWriter|unexpected pos|file write failed")
_OS_ERROR_CODE = re.compile(r"\(os error (\d+)\)")


def write_failure(error: BaseException, target: Path) -> WriteFailed | None:
    """`error` as a WriteFailed naming `target` if it says a write failed (an OSError, torch's or safetensors' word
    for one); None for anything else."""
    if isinstance(error, WriteFailed):
        return error
    if isinstance(error, OSError):
        return write_failed(error, target)
    code = _OS_ERROR_CODE.search(str(error))
    if code and type(error).__name__ == "SafetensorError":
        return write_failed(OSError(int(code.group(1)), os.strerror(int(code.group(1)))), target)
    if isinstance(error, RuntimeError) and _TORCH_WRITE_FAILED.search(str(error)):
        # torch does not say why; a full disk is by far the likeliest
        full = shutil.disk_usage(target.parent if target.parent.exists() else ".").free < 2**20
        return WriteFailed(target, "the disk is full" if full else "the write failed: "
                           + str(error).strip().splitlines()[0][:120], True)
    return None


@contextmanager
def writes_to(target: Path) -> Iterator[None]:
    """A failed write inside the block (a full disk, no permission) as one WriteFailed line naming `target`."""
    try:
        yield
    except Exception as error:
        failure = write_failure(error, target)
        if failure is None:
            raise
        raise failure from None


def run_relative(path: str | None, folder: Path) -> str | None:
    """A path the run owns (a checkpoint in its folder) as a path relative to `folder`, so that the record still
    holds when the folder is moved; any other path (a model elsewhere) as it is."""
    if path is None or not Path(path).is_absolute():
        return path
    real, base = Path(os.path.realpath(path)), real_folder(folder)
    return real.relative_to(base).as_posix() if real.is_relative_to(base) else path


def shared_run_dir(output_dir: Path, overwrite: bool) -> Path:
    """The folder rank 0 writes, as the other torchrun processes see it (they read its checkpoints)."""
    return (staging_path(output_dir) if overwrite else output_dir).resolve()
