"""Run records: the run folder, and record.json written atomically and read back through its schema (runs/schema.py:
a typed model per kind of record, old records filled in where they lack a field).

A record holds everything needed to trust a number later: the resolved config, seed, package versions,
hardware, git commit, scores and timings. Files are written to a temporary name and renamed into place,
so a killed run never leaves a half-written file. A record's "status" is "incomplete" from the moment
training starts until the run's last file is written, so a killed run is marked as such.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sbert_repro.config.training import TrainConfig
from sbert_repro.errors import UsageError
from sbert_repro.runs.folders import check_not_busy, make_dir, write_failed, writing
from sbert_repro.runs.record_parts import AnnPoint
from sbert_repro.runs.schema import (  # noqa: F401 (the kinds of record, named where records are read and written)
    ANN_KIND,
    BM25_KIND,
    COST_KIND,
    EVALUATE_KIND,
    FINETUNE_KIND,
    GEOMETRY_KIND,
    PERF_KIND,
    SCALE_KIND,
    AnyRecord,
    Fingerprints,
    RecordError,
    as_json,
    typed,
)

logger = logging.getLogger(__name__)

# What a run folder holds beside its record: each retrieval task's TREC run and per-query scores under RUN_FILES
# (a fine-tune's raw model's under BASELINE/RUN_FILES), and its scores in MTEB's format under MTEB_FOLDER.
RECORD = "record.json"
RUN_FILES, BASELINE, MTEB_FOLDER = "retrieval", "baseline", "mteb-format"
TREC_SUFFIX, PER_QUERY_SUFFIX = ".trec", ".per-query.json"


# The options a command may have for an existing --output-dir; its messages name only those it has.
RUN_DIR_OPTIONS = ("--resume", "--overwrite")


def check_run_dir(path: Path, resume: bool = False, overwrite: bool = False,
                  options: tuple[str, ...] = ("--overwrite",), kind: str | None = None) -> None:
    """Refuse, before any work, an --output-dir the run may not use: one another process is writing; an existing
    non-empty folder is reused only with `resume`, replaced only with `overwrite`, and only if it is a run folder
    (of the command's own `kind`, where given: an `evaluate --overwrite` with a typo'd folder would otherwise delete
    a fine-tune's trained model). `options`: which of RUN_DIR_OPTIONS the command has (evaluate has no --resume, a
    benchmark neither)."""
    check_not_busy(path, "--output-dir")
    _check_contents(path, resume, overwrite, options, kind)


def _check_contents(path: Path, resume: bool, overwrite: bool, options: tuple[str, ...] = ("--overwrite",),
                    kind: str | None = None) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        # An index folder is another command's: resuming a run there would mix the two.
        if resume and ((path / "encode-progress.json").is_file() or (path / "index.json").is_file()):
            raise UsageError(f"--resume: {path} is an index folder (made by `sbert-repro index`), not a run; "
                             "continue it with `sbert-repro index --resume`, or give the --output-dir of a run")
        if resume:
            return
        if not overwrite:
            ways = ["choose a new folder", *(["continue it with --resume"] if "--resume" in options else []),
                    *(["replace it with --overwrite"] if "--overwrite" in options else [])]
            raise UsageError(f"--output-dir {path}: already exists and is not empty; "
                             f"{', '.join(ways[:-1]) + ' or ' + ways[-1] if len(ways) > 1 else ways[0]}")
        # A run folder holds record.json, or seed-<n>/record.json: a folder of runs (runs/) is not one.
        if not path.is_dir() or not ((path / RECORD).is_file() or any(path.glob(f"seed-*/{RECORD}"))):
            raise UsageError(f"--overwrite: {path} is not a run folder (no {RECORD} or seed-*/{RECORD} in it); "
                             "not deleting it")
        found = _run_kind(path) if kind is not None else None
        if found is not None and found != kind:
            held = f"a {found} run" + (" and its trained model" if found == FINETUNE_KIND else "")
            raise UsageError(f"--overwrite: {path} holds {held}, and `{kind}` replaces only a run of its own; not "
                             "deleting it: give another --output-dir, or remove that folder yourself")
    elif resume:
        raise UsageError(f"--resume: {path} holds no run to continue; give the --output-dir of an interrupted run")


def _run_kind(path: Path) -> str | None:
    """The kind of the run in `path` (its record.json's, or its first seed's), or None where none can be read."""
    for record in [path / RECORD, *sorted(path.glob(f"seed-*/{RECORD}"))]:
        try:
            kind = json.loads(record.read_text(encoding="utf-8")).get("kind")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            continue
        if isinstance(kind, str):
            return kind
    return None


def create_run_dir(path: Path) -> Path:
    """Make a new (or empty) run folder for a benchmark; returns its absolute path."""
    check_run_dir(path, options=())
    return make_dir(path, "--output-dir")


@contextmanager
def open_run_dir(path: Path, resume: bool = False, overwrite: bool = False, staged: bool = False,
                 options: tuple[str, ...] = ("--overwrite",), kind: str | None = None) -> Iterator[Path]:
    """Hold the run folder that check_run_dir allowed, as its only writer, and yield the absolute folder to write
    into (absolute, so the checkpoint paths a record keeps hold from any working directory).

    With `overwrite` (or `staged`) the run is built in a staging folder beside `path` and replaces it only when
    the block succeeds: a failed or interrupted run leaves the previous one as it was, and no debris. Otherwise
    the run writes into `path` itself, where --resume finds what an interrupted run left."""
    with writing(path, "--output-dir", replace=overwrite or staged,
                 check=lambda: _check_contents(path, resume, overwrite, options, kind)) as run_dir:
        yield run_dir


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise write_failed(error, path) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)  # no .tmp debris, whatever stopped the write
        if isinstance(error, OSError):
            raise write_failed(error, path) from None
        raise


def current_umask() -> int:
    """The process's umask (reading it means setting it: it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, value: Any) -> None:
    """`value` as strict JSON: a NaN or an infinity (which json would write as the non-JSON NaN, Infinity) stops
    the write in one line instead of leaving a file no JSON reader accepts."""
    try:
        text = json.dumps(value, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        raise UsageError(f"{path}: not written, since {_non_finite(value) or 'a value'} is not a finite number, "
                         "which JSON cannot hold; the command stopped rather than write a bad file") from None
    write_text_atomic(path, text + "\n")


def _non_finite(value: Any, where: str = "") -> str | None:
    """The key path of the first NaN or infinity in `value` ('finetuned.scores.stsb/spearman'), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def read_record(folder: Path) -> AnyRecord | None:
    """folder/record.json, typed by its schema, or None when there is none."""
    path = folder / RECORD
    if not path.is_file():
        return None
    return load_record(path, "move it away or start a new --output-dir")


def load_record(path: Path, remedy: str) -> AnyRecord:
    """The record at `path`, typed by its schema: every reader of records reads through here, so each sees old records
    upgraded the same way. One that is not JSON is a UsageError naming the file and `remedy`, what the reader's
    user can do about it (the remedy differs: a run's own folder, or results/records/)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not a readable run record ({error}); {remedy}") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror}); {remedy}") from None
    return parse_record(text, path, remedy)


def parse_record(text: str, path: Path, remedy: str) -> AnyRecord:
    """load_record's reading of the text of the record at `path`: strict JSON (no NaN), an object, and every field
    its kind's schema declares of the type declared (runs/schema.py); a field that fails is named in one line."""
    try:
        record = json.loads(text, parse_constant=_not_json)
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise UsageError(f"{path}: not a readable run record ({error}); {remedy}") from None
    if not isinstance(record, dict):
        raise UsageError(f"{path}: not a run record (a JSON {type(record).__name__}, not an object); {remedy}")
    try:
        return typed(record)
    except RecordError as error:
        raise UsageError(f"{path}: not a run record as its schema has it ({_fault(error)}); {remedy}") from None


def _fault(error: RecordError) -> str:
    return f"field {error.field}: {error.problem}" if error.field else error.problem


def _not_json(constant: str) -> Any:
    raise ValueError(f"it holds {constant}, which is not JSON")


def write_record(path: Path, record: dict[str, Any]) -> None:
    """record.json, written atomically once its schema accepts it: a writer's mistake stops the run in one line rather
    than leave a record no reader takes."""
    try:
        typed(json.loads(json.dumps(record)))  # as it will read back: tuples as lists (a NaN is write_json_atomic's)
    except RecordError as error:
        raise UsageError(f"{path}: not written, since the record does not fit its schema ({_fault(error)})") from None
    write_json_atomic(path, record)  # the writer's own dict: its key order, its ints


# What may differ between an interrupted run and the command that resumes it.
# (Not the seeds: one seed and several lay the run folder out differently.)
RESUME_MAY_CHANGE = {"argv", "resume", "overwrite", "output_dir", "seed", "device", "eval_batch_size", "report_to"}


def resumable_record(folder: Path, config: TrainConfig, fingerprints: dict[str, Any] | None = None
                     ) -> dict[str, Any] | None:
    """The record an interrupted run left in `folder` (None if none), as it was written (what the schema fills in for
    reading is never written back); it must be of the same setup, and where given, of the same `fingerprints`
    (model/encoder.run_fingerprints: the model and every set as loaded)."""
    record = read_record(folder)
    if record is None:
        return None
    if record.kind != "finetune":
        raise UsageError(f"--resume: {folder} holds a run made by `sbert-repro {record.kind}`, not by finetune; give "
                         "the --output-dir of an interrupted finetune")
    wanted = config.to_dict()
    for key, value in record.config.model_dump(mode="json").items():  # every option: the schema filled them
        # (records made when one config held every command's options also hold evaluate's index options)
        if key in wanted and key not in RESUME_MAY_CHANGE and wanted[key] != value:
            raise UsageError(f"--resume: the run in {folder} was made with {key}={value!r}, not {wanted.get(key)!r}; "
                             "resume it with its own options")
    if fingerprints is not None:
        check_fingerprints(folder, config, record.fingerprints, fingerprints)
    return as_json(record)


def check_fingerprints(folder: Path, config: TrainConfig, recorded: Fingerprints | None,
                       current: dict[str, Any]) -> None:
    """Refuse, in one line naming what changed, to continue a run of another model or other data than it began
    with; a record made before fingerprints were kept is continued with a warning."""
    if recorded is None:
        logger.warning("--resume: %s was recorded without fingerprints of its model and data, so a change to either "
                       "since it began cannot be seen", folder)
        return
    changed = None
    if recorded.model_sha256 != current["model_sha256"]:
        changed = f"{config.model} holds other weights or another tokenizer than it began with"
    elif recorded.modules_sha256 != current["modules_sha256"]:
        changed = f"{config.model}'s modules (pooling, Dense, Normalize: their configs or weights) changed"
    elif recorded.model_prompts != current["model_prompts"]:
        changed = f"{config.model}'s prompts (config_sentence_transformers.json) changed"
    elif recorded.model_max_seq_length not in (None, current["model_max_seq_length"]):
        changed = (f"{config.model}'s max_seq_length changed ({recorded.model_max_seq_length}, now "
                   f"{current['model_max_seq_length']})")
    else:
        edited = [name for name, sha in recorded.data_sha256.items() if current["data_sha256"].get(name, sha) != sha]
        if edited:
            changed = f"the data of {', '.join(edited)} changed (edited or reordered)"
    if changed:
        raise UsageError(f"--resume: {changed} since the run in {folder} began; resume with the model and data it "
                         "began with, or start afresh with --overwrite")


# ----------------------------------------------------------------------------- what benchmarks record

TARGET_RECALL = 0.95


def best_at_target_recall(points: list[AnnPoint]) -> AnnPoint | None:
    """The fastest approximate setting with recall@10 >= 0.95 against exact search, or None where none reaches it."""
    good = [point for point in points if point.index != "Flat" and point.recall_at_10_vs_exact >= TARGET_RECALL]
    return max(good, key=lambda point: point.queries_per_s, default=None)


PLAIN_ENCODE, EXAMPLE_RECIPE = "plain sentence-transformers", "example recipe"
