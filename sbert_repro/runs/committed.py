"""The records committed to results/records/: read back for the pages, and a run's records copied in (make_tables
--add), each file whole or not at all, with the paths of the machine it ran on named by label."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from sbert_repro.errors import UsageError
from sbert_repro.runs.folders import fresh_staging, removed_on_failure
from sbert_repro.runs.paths import labelled
from sbert_repro.runs.records import (
    BASELINE,
    MTEB_FOLDER,
    PER_QUERY_SUFFIX,
    RECORD,
    RUN_FILES,
    current_umask,
    load_record,
    parse_record,
)
from sbert_repro.runs.schema import AnyRecord

logger = logging.getLogger(__name__)

REMEDY = "restore it or remove it"


def load_records(records_dir: Path) -> list[AnyRecord]:
    """Every finished record.json below `records_dir`, typed by its schema (runs/schema.py), in path order, each
    knowing its path under `records_dir`. A record of a run that was killed or is still going (status "incomplete")
    is skipped, with a warning: its numbers are not final. One that does not fit its schema is a UsageError naming
    the file and the field: a table that silently left it out would misreport its setup's mean."""
    records = []
    for path in sorted(records_dir.rglob(RECORD)):
        record = load_record(path, REMEDY)
        if record.status != "complete":
            logger.warning("skipping %s: the run did not finish (status %r)", path, record.status)
            continue
        records.append(record.at(path.parent.relative_to(records_dir).as_posix()))
    return records


@dataclass(frozen=True)
class RunToAdd:
    """A run folder's records as `--add` copies them into records/<name>/, read and checked before anything is
    written: the files by path under that folder (bytes and permission bits), and the records as load_records
    would read them back. No files: the same records are in already (a retry after a kill)."""

    target: Path
    files: dict[Path, tuple[bytes, int]]
    records: list[AnyRecord]


def read_run(run_dir: Path, records_dir: Path) -> RunToAdd:
    """A run's records (record.json, an evaluation's scores.md, the per-query and MTEB-format files: _copied; never
    model weights) as `add` copies them.
    Only finished runs, and only files of the run folder itself: a symbolic link is not followed out of it."""
    sources = sorted(run_dir.rglob(RECORD))
    if not sources:
        raise UsageError(f"--add {run_dir}: no {RECORD} in it; give a finished run folder")
    target = records_dir / run_dir.resolve().name
    files = {path.relative_to(run_dir): _own_file(path, run_dir)
             for source in sources for path in _copied(source.parent)}
    records = []
    for relative, (content, _) in files.items():
        if relative.name == RECORD:
            record = parse_record(content.decode("utf-8"), run_dir / relative, "give a finished run")
            if record.status != "complete":
                raise UsageError(f"--add {run_dir}: {run_dir / relative} is a run that did not finish (status "
                                 f"{record.status!r}); finish it with `{finishing_command(record, run_dir)}`, "
                                 "then add it")
            records.append(record.at((Path(target.name) / relative.parent).as_posix()))
    if target.exists():
        if all((target / relative).is_file() and (target / relative).read_bytes() == content
               for relative, (content, _) in files.items()):
            return RunToAdd(target, {}, [])
        raise UsageError(f"--add {run_dir}: {target} already exists; records are never overwritten")
    return RunToAdd(target, files, records)


# What a reader re-checks a run with, all small: its per-query scores (the raw model's too, under baseline/), which
# `compare` tests, and its scores in MTEB's format. Never model weights, vectors or TREC runs (megabytes).
COPIED = (f"{RUN_FILES}/*{PER_QUERY_SUFFIX}", f"{BASELINE}/{RUN_FILES}/*{PER_QUERY_SUFFIX}",
          f"{MTEB_FOLDER}/results/*/*/*.json")


def _copied(folder: Path) -> list[Path]:
    """The files of a run's (or seed's) folder that --add copies: its record, scores.md, and COPIED's."""
    named = [folder / name for name in (RECORD, "scores.md") if (folder / name).is_file()]
    return named + sorted(path for pattern in COPIED for path in folder.glob(pattern) if path.is_file())


def _own_file(path: Path, run_dir: Path) -> tuple[bytes, int]:
    """A file of the run folder, as committed_bytes gives it, and its permission bits (a private file stays
    private); a link, or a file reached through one out of the folder, is refused."""
    if path.is_symlink() or not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(run_dir)):
        raise UsageError(f"--add {run_dir}: {path} is a symbolic link to {os.path.realpath(path)}; records are "
                         "copied only as files of the run folder: put the file itself there")
    return committed_bytes(path), stat.S_IMODE(path.stat().st_mode)


def finishing_command(record: AnyRecord, run_dir: Path) -> str:
    """The command that continues the unfinished run in `run_dir`: its own options, with --resume."""
    argv = [str(arg) for arg in record.config.argv]
    if argv[:1] == [record.kind]:
        argv = argv[1:]
    kept, value_of_output_dir = [], False
    for arg in argv:
        if value_of_output_dir:
            value_of_output_dir = False
        elif arg == "--output-dir":
            value_of_output_dir = True
        elif arg not in ("--resume", "--overwrite") and not arg.startswith("--output-dir="):
            kept.append(arg)
    folder = run_dir.parent if re.fullmatch(r"seed-\d+", run_dir.name) else run_dir  # a --seeds run's own folder
    return shlex.join(["sbert-repro", record.kind, *kept, "--output-dir", str(folder), "--resume"])


def add_run(run_dir: Path, records_dir: Path) -> list[Path]:
    """Copy the records of the run in `run_dir` into records_dir/<run name>/ (read_run, then copy_run)."""
    return copy_run(read_run(run_dir, records_dir), records_dir)


def copy_run(run: RunToAdd, records_dir: Path) -> list[Path]:
    """Copy a run's records into records_dir/<run name>/. The tables a run printed are not copied: results/README.md
    regenerates them.

    The copy is made in a folder beside records_dir and renamed into place, so a killed --add leaves no half a
    run; adding the same records again (a retry after a kill) is accepted, other records under the name are not."""
    folders = sorted({run.target / relative.parent for relative in run.files if relative.name == RECORD})
    if not run.files:
        return folders
    staging = fresh_staging(records_dir.parent / f"{run.target.name}.adding", "--add")  # outside records/
    with removed_on_failure(staging):
        for relative, (content, mode) in run.files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_bytes(content)
            os.chmod(staging / relative, mode & 0o666 & ~current_umask())  # never wider than the run's own file
        records_dir.mkdir(parents=True, exist_ok=True)
        os.rename(staging, run.target)
    return folders


def committed_bytes(path: Path) -> bytes:
    """A run file as results/ keeps it, with the paths of the machine it ran on named by label (paths.labelled): a
    record laid out as records.write_json_atomic lays it out, a table (scores.md) line by line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--add: {path}: cannot read it as UTF-8 text ({error}); give a finished run") from None
    if path.name != RECORD:
        return labelled(text).encode("utf-8")
    try:
        record = json.loads(text, parse_constant=lambda constant: float(constant))
    except ValueError as error:
        raise UsageError(f"--add: {path} is not a readable run record ({error}); give a finished run") from None
    try:
        return (json.dumps(labelled(record), indent=2, allow_nan=False) + "\n").encode("utf-8")
    except ValueError:
        raise UsageError(f"--add: {path} holds a NaN or an infinity, which JSON cannot hold; give a finished run "
                         "whose scores are numbers") from None
