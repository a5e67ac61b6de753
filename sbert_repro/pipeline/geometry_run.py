"""`sbert-repro geometry`: the space each model's sentence vectors fill, measured on one seeded sample.

Why cosine between raw contextual vectors means little and why it means more after a siamese fine-tune, as
numbers (analysis/measure.py and analysis/geometry.py compute them): (1) the sentences, the STS tasks' test sentences
by default, and STSb test's gold-scored pairs; (2) each model, given, from a fine-tune run, or with random weights;
(3) its vectors for the same sample; (4) the measures, into one record; and the record as a table (geometry.md).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer

from sbert_repro.analysis.measure import ALIGNED_GOLD, measure_vectors
from sbert_repro.config.encoding import GeometryConfig, given_pooling
from sbert_repro.config.hardware import resolved_with_reason
from sbert_repro.data.loaders import STSPairs, load_eval_sets
from sbert_repro.data.sources import read_sentences
from sbert_repro.data.tasks import TRAIN_TASK
from sbert_repro.errors import UsageError
from sbert_repro.model.encoder import (
    build_model,
    encode,
    eval_max_seq_length,
    model_reference,
    random_weight_model,
)
from sbert_repro.model.precision import for_inference
from sbert_repro.runs import progress
from sbert_repro.runs.environment import environment
from sbert_repro.runs.paths import path_label
from sbert_repro.runs.records import (
    FINETUNE_KIND,
    GEOMETRY_KIND,
    RECORD,
    load_record,
    open_run_dir,
    write_record,
    write_text_atomic,
)


@dataclass(frozen=True)
class Subject:
    """One model to measure, and where it came from."""

    model: str  # what build_model loads
    label: str  # how the record names it
    role: str  # "given", "raw" (a run's starting model), "fine-tuned" or "random weights"
    run: str | None = None
    objective: str | None = None
    seed: int | None = None


def run_subjects(folder: Path) -> list[Subject]:
    """A fine-tune run's raw model and its first finished seed's fine-tuned model (model/ beside its record)."""
    paths = [folder / RECORD] if (folder / RECORD).is_file() else sorted(folder.glob(f"seed-*/{RECORD}"))
    finished = [(path, record) for path in paths
                if (record := load_record(path, "give a finished run folder")).status == "complete"
                and record.kind == FINETUNE_KIND and (path.parent / "model").is_dir()]
    if not finished:
        raise UsageError(f"--run {folder}: no finished fine-tune with a saved model/ in it; give the folder of a "
                         "`finetune` run that completed")
    path, record = finished[0]
    config = record.config
    return [Subject(config.model, path_label(config.model), "raw", folder.name, None, None),
            Subject(str(path.parent / "model"), f"{folder.name}/{path.parent.relative_to(folder).as_posix()}/model"
                    .replace("/./", "/"), "fine-tuned", folder.name, config.objective, config.seed)]


def measure_geometry(config: GeometryConfig) -> dict[str, Any]:
    """Measure every model of `config` on the same sample; write record.json and geometry.md to the run folder."""
    started = time.perf_counter()
    config, precision_reason = resolved_with_reason(config)  # the device and number format, once, for every model
    run_environment = environment(config.device, precision_reason)

    # 1. The sentences: a seeded sample of the pool, and STSb test's pairs with their gold scores.
    progress.stage("loading the data")
    sts_sets, _ = load_eval_sets(tuple(dict.fromkeys((*config.sts_tasks, TRAIN_TASK))), (), config.data_dir)
    gold_pairs = sts_sets[TRAIN_TASK]
    pool = read_sentences(config.sentences, "--sentences") if config.sentences else list(dict.fromkeys(
        sentence for name in config.sts_tasks for sentence in sts_sets[name].sentences1 + sts_sets[name].sentences2))
    rows = np.sort(np.random.default_rng(config.seed).choice(len(pool), min(config.sample, len(pool)), replace=False))
    sample = [pool[row] for row in rows]
    if _aligned_pairs(gold_pairs) < 2:
        raise UsageError(f"{gold_pairs.source}: fewer than 2 pairs with gold >= {ALIGNED_GOLD}; alignment needs them")

    # 2. The models, each built before the first is measured (a bad one fails in seconds, not after the others).
    subjects = [Subject(model, path_label(model), "given") for model in config.models]
    subjects += [subject for folder in config.runs for subject in run_subjects(folder)]
    # Runs from one raw model share it: measured once, under its first name.
    unique: dict[str, Subject] = {}
    for subject in subjects:
        unique.setdefault(model_reference(subject.model), subject)
    subjects = list(unique.values())
    with tempfile.TemporaryDirectory() as scratch, open_run_dir(config.output_dir, overwrite=config.overwrite,
                                                                 staged=True, kind=GEOMETRY_KIND) as run_dir:
        subjects += [Subject(str(random_weight_model(Path(shape), Path(scratch) / f"random-{number}")),
                             f"{path_label(shape)} shape, random weights", "random weights")
                     for number, shape in enumerate(config.random_models)]
        models = [_model(subject, config) for subject in subjects]

        # 3-4. Each model's vectors of the same sentences, and their measures.
        measured = [_measure_one(subject, model, config, sample, gold_pairs)
                    for subject, model in zip(subjects, models, strict=True)]
        record = geometry_record(config, run_environment, sts_sets, len(pool), len(sample), measured, started)
        table = geometry_table(record)
        write_text_atomic(run_dir / "geometry.md", table)
        write_record(run_dir / RECORD, record)
    print(progress.terminal_lines(table))
    return record


def geometry_record(config: GeometryConfig, run_environment: dict[str, Any], sts_sets: dict[str, STSPairs],
                    distinct: int, sampled: int, measured: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """The run's record.json: its setup, the sentences (`distinct` in the pool, `sampled` of them), STSb test's gold
    pairs and each model's measures; `started` is the run's perf_counter at its start."""
    gold_pairs = sts_sets[TRAIN_TASK]
    return {"kind": GEOMETRY_KIND, "status": "complete", "config": config.to_dict(),
            "environment": run_environment,
            "data": {name: pairs.source for name, pairs in sts_sets.items()},
            "sentences": {"from": path_label(str(config.sentences)) if config.sentences else
                          f"the test sentences of {', '.join(config.sts_tasks)}",
                          "distinct": distinct, "sampled": sampled},
            "gold_pairs": {"task": TRAIN_TASK, "pairs": len(gold_pairs), "aligned_pairs": _aligned_pairs(gold_pairs)},
            "models": measured, "wall_seconds": time.perf_counter() - started}


def _aligned_pairs(gold_pairs: STSPairs) -> int:
    return int(np.sum(np.asarray(gold_pairs.scores, dtype=np.float64) >= ALIGNED_GOLD))


def _model(subject: Subject, config: GeometryConfig) -> SentenceTransformer:
    try:
        built = build_model(subject.model, given_pooling(config), config.device, config.trust_remote_code)
        model = for_inference(built, config.precision)
    except UsageError as error:
        if subject.role == "given":
            raise
        raise UsageError(f"{subject.label} ({subject.role}): {error}") from None
    model.max_seq_length = eval_max_seq_length(model, config.eval_max_seq_length)
    return model


def _measure_one(subject: Subject, model: SentenceTransformer, config: GeometryConfig, sample: list[str],
                 gold_pairs: STSPairs) -> dict[str, Any]:
    """Encode the sample and the gold pairs with one model, and measure its vectors."""
    progress.stage(f"measuring {subject.label}")
    start = time.perf_counter()
    # The vectors as the model gives them: the spectrum is of those (the measures of cosine normalise themselves).
    vectors, _ = encode(model, sample, config.eval_batch_size, f"{subject.label}: sample", normalize=False)
    unique = list(dict.fromkeys(gold_pairs.sentences1 + gold_pairs.sentences2))
    encoded, _ = encode(model, unique, config.eval_batch_size, f"{subject.label}: STSb test", normalize=False)
    row = {sentence: i for i, sentence in enumerate(unique)}
    sides = tuple(encoded[[row[s] for s in side]] for side in (gold_pairs.sentences1, gold_pairs.sentences2))
    encode_s = time.perf_counter() - start
    measures = measure_vectors(vectors, sides, np.asarray(gold_pairs.scores), config.pairs, config.seed)
    return {"model": subject.label, "role": subject.role, "run": subject.run, "objective": subject.objective,
            "seed": subject.seed, **measures, "encode_s": encode_s}


def geometry_table(record: dict[str, Any]) -> str:
    """The run's measures as a Markdown table, one row per model (printed, and saved as geometry.md)."""
    lines = ["| model | role | random-pair cosine | centered | alignment | uniformity | top-10 PC share | "
             "effective rank | gold-bin separation |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for measured in record["models"]:
        lines.append(f"| `{measured['model']}` | {measured['role']} | {measured['anisotropy']['mean_cosine']:.3f} | "
                     f"{measured['anisotropy']['centered_mean_cosine']:.3f} | {measured['alignment']:.3f} | "
                     f"{measured['uniformity']:.3f} | {100 * measured['spectrum']['top10_share']:.1f}% | "
                     f"{measured['spectrum']['effective_rank']:.1f} of {measured['dimension']} | "
                     f"{measured['gold_bins']['separation']:.2f} |")
    return "\n".join(lines) + "\n"
