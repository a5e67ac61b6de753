"""The committed run records, read and grouped: runs of one setup (all but the seed) make one row."""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from sbert_repro.errors import UsageError
from sbert_repro.report.labels import format_score, mean_and_std
from sbert_repro.runs.folders import fresh_staging, removed_on_failure
from sbert_repro.runs.paths import labelled, model_label
from sbert_repro.runs.records import GEOMETRY_KIND, RECORD, load_record

logger = logging.getLogger(__name__)


# Config fields that tell runs apart; seeds and where the outputs went do not.
GROUP_FIELDS = ("model", "pooling", "data_dir", "objective", "epochs", "nli_task", "nli_split", "nli_epochs",
                "concat", "batch_size", "lr", "warmup_ratio", "weight_decay", "max_seq_length", "max_train_samples",
                "eval_max_seq_length", "save_steps", "precision", "group_by_length", "retrieval_split",
                "train_task", "train_split", "hard_negatives", "negative_margin", "validation_share",
                "validation_seed", "validation_documents", "stsb_objective", "matryoshka_dims", "rerank_top_k")
# The STSb losses beside the paper's cosine regression, as a setup's description names them.
STS_LOSS_NAMES = {"sts-cosent": "CoSENT loss", "sts-angle": "AnglE loss"}


def load_records(records_dir: Path) -> list[dict[str, Any]]:
    """Every finished record.json below `records_dir`, in path order, each with its relative path under
    "_path". A record of a run that was killed or is still going (status "incomplete") is skipped, with a
    warning: its numbers are not final."""
    records = []
    for path in sorted(records_dir.rglob(RECORD)):
        record = load_record(path, "restore it or remove it")
        if record["status"] != "complete":
            logger.warning("skipping %s: the run did not finish (status %r)", path, record.get("status"))
            continue
        record["_path"] = path.parent.relative_to(records_dir).as_posix()
        records.append(record)
    return records


def add_run(run_dir: Path, records_dir: Path) -> list[Path]:
    """Copy a run's records (record.json, and an evaluation's scores.md; never model weights) into
    records_dir/<run name>/. The tables a run printed are not copied: results/README.md regenerates them.

    The copy is made in a folder beside records_dir and renamed into place, so a killed --add leaves no half a
    run; adding the same records again (a retry after a kill) is accepted, other records under the name are not."""
    sources = sorted(run_dir.rglob(RECORD))
    if not sources:
        raise UsageError(f"--add {run_dir}: no {RECORD} in it; give a finished run folder")
    target_root = records_dir / run_dir.resolve().name
    files = {source.parent.relative_to(run_dir) / name: committed_bytes(source.parent / name)
             for source in sources for name in (RECORD, "scores.md") if (source.parent / name).is_file()}
    if target_root.exists():
        if all((target_root / relative).is_file() and (target_root / relative).read_bytes() == content
               for relative, content in files.items()):
            return [target_root / source.parent.relative_to(run_dir) for source in sources]
        raise UsageError(f"--add {run_dir}: {target_root} already exists; records are never overwritten")
    staging = fresh_staging(records_dir.parent / f"{target_root.name}.adding", "--add")  # outside records/
    with removed_on_failure(staging):
        for relative, content in files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_bytes(content)
        records_dir.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target_root)
    return [target_root / source.parent.relative_to(run_dir) for source in sources]


def committed_bytes(path: Path) -> bytes:
    """A run file as results/ keeps it, with the paths of the machine it ran on named by label (paths.labelled): a
    record laid out as records.write_json_atomic lays it out, a table (scores.md) line by line."""
    if path.name != RECORD:
        return labelled(path.read_text(encoding="utf-8")).encode("utf-8")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"--add: {path} is not a readable run record ({error}); give a finished run") from None
    return (json.dumps(labelled(record), indent=2) + "\n").encode("utf-8")


def is_postprocessed(record: dict[str, Any]) -> bool:
    """An evaluate run scored through a fitted post-processing (--postprocess); records older than the option
    have no such key and were not."""
    return record["kind"] == "evaluate" and record["config"].get("postprocess") is not None


def geometry_page_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that give results/geometry.md its reason to exist: geometry runs, post-processed evaluations."""
    return [record for record in records if record["kind"] == GEOMETRY_KIND or is_postprocessed(record)]


def setting(record: dict[str, Any], name: str) -> Any:
    return record["config"][name]  # every option: load_records upgraded the record


def group_key(record: dict[str, Any]) -> tuple:
    return tuple(str(setting(record, name)) for name in GROUP_FIELDS)


def finetune_groups(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Fine-tune records of the same setup (all but the seed), each group sorted by seed."""
    groups: dict[tuple, dict[int, dict[str, Any]]] = defaultdict(dict)
    for record in records:
        if record["kind"] != "finetune":
            continue
        seeds = groups[group_key(record)]
        seed = record["config"]["seed"]
        if seed in seeds:  # the same seed twice is one measurement, not two
            logger.warning("records/%s repeats seed %d of records/%s; counting it once", record["_path"], seed,
                           seeds[seed]["_path"])
            continue
        seeds[seed] = record
    return [[seeds[seed] for seed in sorted(seeds)] for _, seeds in sorted(groups.items())]


def describe(group: list[dict[str, Any]]) -> str:
    record = group[0]
    objective = setting(record, "objective")
    nli = f"{setting(record, 'nli_task')} {setting(record, 'nli_split')}, {setting(record, 'nli_epochs')} epoch(s)"
    stsb = f"STSb {setting(record, 'epochs')} epoch(s)"
    stsb_loss = STS_LOSS_NAMES.get(setting(record, "stsb_objective"))
    training = {"sts-cosine": stsb,
                **{name: f"{stsb}, {loss}" for name, loss in STS_LOSS_NAMES.items()},
                # "|" would end a Markdown table cell
                "nli-softmax": f"NLI softmax ({setting(record, 'concat')}) on {nli}".replace("|", "\\|"),
                "nli-mnrl": f"NLI ranking loss on {nli}",
                "nli-then-stsb": f"NLI softmax on {nli}, then {stsb}" + (f", {stsb_loss}" if stsb_loss else ""),
                "retrieval": f"{retrieval_training(record)}, {setting(record, 'epochs')} epoch(s)",
                "cross-encoder": f"{stsb}, BinaryCrossEntropyLoss on gold / 5",
                "cross-encoder-retrieval": f"re-ranker on {retrieval_training(record)}, {setting(record, 'epochs')} "
                                           f"epoch(s), top {setting(record, 'rerank_top_k')} of the raw model's "
                                           "search re-ranked"}[objective]
    first = setting(record, "max_train_samples")
    samples = f", first {first} train pairs" if first else ""
    samples += speed_options(record)
    if setting(record, "matryoshka_dims"):
        samples += f", Matryoshka {','.join(map(str, setting(record, 'matryoshka_dims')))}"
    seeds = f"seeds {', '.join(str(r['config']['seed']) for r in group)}"
    if objective in ("cross-encoder", "cross-encoder-retrieval"):  # pooling: the baseline's (the raw bi-encoder)
        return (f"cross-encoder from `{model_label(setting(record, 'model'))}`, {training}{samples} (baseline: "
                f"{setting(record, 'pooling')} pooling, cosine), {seeds}")
    return f"`{model_label(setting(record, 'model'))}`, {setting(record, 'pooling')} pooling, {training}{samples}, " \
        + seeds


def retrieval_training(record: dict[str, Any]) -> str:
    """'scifact train queries, batch 64, lr 2e-05, 3 hard negatives (margin 0.05)' for a retrieval fine-tune."""
    negatives = setting(record, "hard_negatives")
    mined = (f"{negatives} hard negative(s) (margin {setting(record, 'negative_margin'):g})" if negatives
             else "in-batch negatives only")
    return (f"{setting(record, 'train_task')} {setting(record, 'train_split')} queries, batch "
            f"{setting(record, 'batch_size')}, lr {setting(record, 'lr'):g}, {mined}")


def precision_option(record: dict[str, Any]) -> str:
    """', bf16' for a run in another number format than the paper's fp32; '' for fp32."""
    return f", {setting(record, 'precision')}" if setting(record, "precision") != "fp32" else ""


def speed_options(record: dict[str, Any]) -> str:
    """', bf16, length-grouped batches' for a run that used them; '' for the paper's fp32 and random batches."""
    return precision_option(record) + (", length-grouped batches" if setting(record, "group_by_length") else "")


def run_folders(group: list[dict[str, Any]]) -> list[str]:
    """The folders under records/ that a group's seeds come from, in order."""
    return list(dict.fromkeys(Path(record["_path"]).parts[0] for record in group))


def sources(group: list[dict[str, Any]], prefix: str = "records") -> str:
    """Links to the run folders a group's seeds come from."""
    return ", ".join(f"[records]({prefix}/{folder}/)" for folder in run_folders(group))


def seed_values(group: list[dict[str, Any]], stage: str, key: str) -> list[float] | None:
    """`key` of every seed in the group, or None where some seed did not score it: a missing score is left
    out, never averaged in as 0."""
    values = [r[stage]["scores"].get(key) for r in group]
    return None if None in values else values


def seed_stat(group: list[dict[str, Any]], stage: str, key: str) -> str:
    values = seed_values(group, stage, key)
    return "-" if values is None else format_score(*mean_and_std(values))
