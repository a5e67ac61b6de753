"""The committed run records grouped: runs of one setup (all but the seed) make one row, described as a table cell
names it."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sbert_repro.config.checks import setup_fields
from sbert_repro.config.objectives import get_objective
from sbert_repro.config.training import TrainConfig
from sbert_repro.report.labels import format_score, mean_and_std
from sbert_repro.report.markdown import code, text
from sbert_repro.report.prose import fill_some, placeholders, sections
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.record_parts import Part
from sbert_repro.runs.records import (
    EVALUATE_KIND,
    FINETUNE_KIND,
    GEOMETRY_KIND,
)
from sbert_repro.runs.schema import AnyRecord, FinetuneRecord

logger = logging.getLogger(__name__)


# The config fields that tell runs apart, as TrainConfig declares them; seeds and where the outputs went do not.
# Tables list setups by model, pooling, data, objective, epochs and learning rate, then by the others as declared.
ROW_ORDER = ("model", "pooling", "data_dir", "objective", "epochs", "lr")
SETUP_FIELDS = (*ROW_ORDER, *(name for name in setup_fields(TrainConfig) if name not in ROW_ORDER))
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
        return (f"cross-encoder from {code(model_label(config.model))}, {training} (baseline: {config.pooling} "
                f"pooling, cosine), {seeds}")
    return f"{code(model_label(config.model))}, {config.pooling} pooling, {training}, {seeds}"


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
    return (f"{text(config.train_task)} {config.train_split} queries, batch {config.batch_size}, lr {config.lr:g}, "
            f"{negatives}")

def precision_option(record: FinetuneRecord) -> str:
    """', bf16' for a run in another number format than the paper's fp32; '' for fp32."""
    return f", {record.config.precision}" if record.config.precision != "fp32" else ""


def speed_options(record: FinetuneRecord) -> str:
    """', bf16, length-grouped batches' for a run that used them; '' for the paper's fp32 and random batches; and for
    a record made before the options existed, which holds neither, that they are assumed."""
    assumed = [name for name in SPEED_OPTIONS if name in record.config.assumed]
    return precision_option(record) + (", length-grouped batches" if record.config.group_by_length else "") + \
        (f", {' and '.join(SPEED_OPTIONS[name] for name in assumed)} assumed (not recorded)" if assumed else "")


# How a page names the paper's value of each speed option, where a record is assumed to have it.
SPEED_OPTIONS = {"precision": "fp32", "group_by_length": "random batches"}


def run_folders(group: list[AnyRecord]) -> list[str]:
    """The folders under records/ that a group's seeds come from, in order."""
    return list(dict.fromkeys(Path(record.path).parts[0] for record in group))


def sources(group: list[AnyRecord], prefix: str = "records") -> str:
    """Links to the run folders a group's seeds come from."""
    return ", ".join(f"[records]({quote(f'{prefix}/{folder}/')})" for folder in run_folders(group))


def seed_values(group: list[FinetuneRecord], stage: str, key: str) -> list[float] | None:
    """`key` ("task/metric") of every seed in the group at `stage` ("baseline", "finetuned"), or None where some seed
    did not score it: a missing score is left out, never averaged in as 0."""
    values = [getattr(record, stage).score(key) for record in group]
    return None if None in values else values


def seed_stat(group: list[FinetuneRecord], stage: str, key: str) -> str:
    values = seed_values(group, stage, key)
    return "-" if values is None else format_score(*mean_and_std(values))
