"""The committed run records, read and grouped: runs of one setup (all but the seed) make one row."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import stat
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbert_repro.config.checks import setup_fields
from sbert_repro.config.objectives import get_objective
from sbert_repro.config.training import TrainConfig
from sbert_repro.errors import UsageError
from sbert_repro.report.labels import format_score, mean_and_std
from sbert_repro.report.prose import fill_some, placeholders, sections
from sbert_repro.runs.folders import fresh_staging, removed_on_failure
from sbert_repro.runs.paths import labelled, model_label
from sbert_repro.runs.record_parts import Part
from sbert_repro.runs.records import (
    EVALUATE_KIND,
    FINETUNE_KIND,
    GEOMETRY_KIND,
    RECORD,
    current_umask,
    load_record,
    parse_record,
)
from sbert_repro.runs.schema import AnyRecord, FinetuneRecord

logger = logging.getLogger(__name__)


# The config fields that tell runs apart, as TrainConfig declares them; seeds and where the outputs went do not.
SETUP_FIELDS = setup_fields(TrainConfig)
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
    """A run's records (record.json, and an evaluation's scores.md; never model weights) as `add` copies them.
    Only finished runs, and only files of the run folder itself: a symbolic link is not followed out of it."""
    sources = sorted(run_dir.rglob(RECORD))
    if not sources:
        raise UsageError(f"--add {run_dir}: no {RECORD} in it; give a finished run folder")
    target = records_dir / run_dir.resolve().name
    files = {source.parent.relative_to(run_dir) / name: _own_file(source.parent / name, run_dir)
             for source in sources for name in (RECORD, "scores.md") if (source.parent / name).is_file()}
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


def is_postprocessed(record: AnyRecord) -> bool:
    """An evaluate run scored through a fitted post-processing (--postprocess)."""
    return record.kind == EVALUATE_KIND and record.config.postprocess is not None


def geometry_page_records(records: list[AnyRecord]) -> list[AnyRecord]:
    """The records that give results/geometry.md its reason to exist: geometry runs, post-processed evaluations."""
    return [record for record in records if record.kind == GEOMETRY_KIND or is_postprocessed(record)]


def setting(record: AnyRecord, name: str) -> Any:
    """A config option of the record by its name (every option: the schema filled in those it lacked)."""
    return getattr(record.config, name)


def group_key(record: FinetuneRecord) -> tuple:
    return tuple(str(setting(record, name)) for name in SETUP_FIELDS)


def finetune_groups(records: list[AnyRecord]) -> list[list[FinetuneRecord]]:
    """Fine-tune records of the same setup (all but the seed), each group sorted by seed."""
    groups: dict[tuple, dict[int, FinetuneRecord]] = defaultdict(dict)
    for record in records:
        if record.kind != FINETUNE_KIND:
            continue
        seeds = groups[group_key(record)]
        if record.config.seed in seeds:  # the same seed twice is one measurement, not two
            logger.warning("records/%s repeats seed %d of records/%s; counting it once", record.path,
                           record.config.seed, seeds[record.config.seed].path)
            continue
        seeds[record.config.seed] = record
    return [[seeds[seed] for seed in sorted(seeds)] for _, seeds in sorted(groups.items())]


def describe(group: list[FinetuneRecord]) -> str:
    """A setup as a table cell names it: the model, its pooling, how it was trained (templates/setups.md, a section
    per objective), the options off the paper's recipe, and the seeds."""
    record, config = group[0], group[0].config
    first, trained_on = config.max_train_samples, record.training and record.training.train_pairs
    cut = first and not (trained_on is not None and trained_on < first)  # a set smaller than the cut is whole
    samples = (f", first {first} train pairs" if cut else "") + speed_options(record)
    if config.matryoshka_dims:
        samples += f", Matryoshka {','.join(map(str, config.matryoshka_dims))}"
    seeds = f"seeds {', '.join(str(r.config.seed) for r in group)}"
    # "|" (in a concatenation, u,v,|u-v|) would end the table cell
    training = training_description(config, config.objective).replace("|", "\\|") + samples
    if get_objective(config.objective).cross_encoder:  # pooling: the baseline's (the raw bi-encoder)
        return (f"cross-encoder from `{model_label(config.model)}`, {training} (baseline: {config.pooling} pooling, "
                f"cosine), {seeds}")
    return f"`{model_label(config.model)}`, {config.pooling} pooling, {training}, {seeds}"


def training_description(config: Part, objective: str) -> str:
    """How `objective` trained, by its section of templates/setups.md."""
    values = {"epochs": config.epochs, "concat": config.concat, "label": get_objective(objective).label,
              "nli": f"{config.nli_task} {config.nli_split}, {config.nli_epochs} epoch(s)",
              "retrieval": retrieval_training(config), "rerank_top_k": config.rerank_top_k}
    if "stsb" in placeholders(sections("setups")[objective]):  # a first stage, then --stsb-objective's
        values["stsb"] = training_description(config, config.stsb_objective)
    return fill_some("setups", objective, values)


def retrieval_training(config: Part) -> str:
    """'scifact train queries, batch 64, lr 2e-05, 3 hard negative(s) (margin 0.05)': how a run trained on a task's
    judgements."""
    negatives = (f"{config.hard_negatives} hard negative(s) (margin {config.negative_margin:g})"
                 if config.hard_negatives else "in-batch negatives only")
    return (f"{config.train_task} {config.train_split} queries, batch {config.batch_size}, lr {config.lr:g}, "
            f"{negatives}")

def precision_option(record: FinetuneRecord) -> str:
    """', bf16' for a run in another number format than the paper's fp32; '' for fp32."""
    return f", {record.config.precision}" if record.config.precision != "fp32" else ""


def speed_options(record: FinetuneRecord) -> str:
    """', bf16, length-grouped batches' for a run that used them; '' for the paper's fp32 and random batches."""
    return precision_option(record) + (", length-grouped batches" if record.config.group_by_length else "")


def run_folders(group: list[AnyRecord]) -> list[str]:
    """The folders under records/ that a group's seeds come from, in order."""
    return list(dict.fromkeys(Path(record.path).parts[0] for record in group))


def sources(group: list[AnyRecord], prefix: str = "records") -> str:
    """Links to the run folders a group's seeds come from."""
    return ", ".join(f"[records]({prefix}/{folder}/)" for folder in run_folders(group))


def seed_values(group: list[FinetuneRecord], stage: str, key: str) -> list[float] | None:
    """`key` ("task/metric") of every seed in the group at `stage` ("baseline", "finetuned"), or None where some seed
    did not score it: a missing score is left out, never averaged in as 0."""
    values = [getattr(record, stage).score(key) for record in group]
    return None if None in values else values


def seed_stat(group: list[FinetuneRecord], stage: str, key: str) -> str:
    values = seed_values(group, stage, key)
    return "-" if values is None else format_score(*mean_and_std(values))
