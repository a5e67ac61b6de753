"""The reproduction, step by step: the raw model's baseline, the siamese cosine fine-tune, the re-score.

`finetune` reads like the sentence-transformers STSb example: (1) data, (2) model, (3) baseline,
(4) train, (5) re-score, (6) save and report. `evaluate` is steps 1-3 alone, for any model.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import transformers
from sentence_transformers import SentenceTransformer

from sbert_repro import cross_encoder, progress
from sbert_repro.config import EvaluateConfig, TrainConfig
from sbert_repro.data import data_checks, load_eval_sets
from sbert_repro.dimensions import check_dims_fit
from sbert_repro.errors import UsageError
from sbert_repro.evaluate import evaluate_tasks, postprocessing_for, save_transforms, score_with_mteb
from sbert_repro.finetune_data import FinetuneData, load_finetune_data, mine_hard_negatives, rerank_candidates
from sbert_repro.folders import name_final_paths, shared_run_dir
from sbert_repro.geometry import check_postprocess_fits
from sbert_repro.losses import training_stages
from sbert_repro.measure import read_sentences
from sbert_repro.model import (
    build_model,
    check_positions,
    eval_max_seq_length,
    for_inference,
    position_limit,
    resolve_device,
    resolve_precision,
)
from sbert_repro.objectives import CROSS_ENCODER_OBJECTIVES, OBJECTIVE_DEFAULTS
from sbert_repro.records import (
    RECORD,
    check_run_dir,
    environment,
    is_main_process,
    open_run_dir,
    resumable_record,
    write_json_atomic,
    write_text_atomic,
)
from sbert_repro.report.gains import gain_rows, gain_table_markdown, scores_table_markdown
from sbert_repro.report.labels import data_label
from sbert_repro.sources import hub_unreachable_reason
from sbert_repro.tasks import RETRIEVAL_TASKS
from sbert_repro.train import finetune as train_model

logger = logging.getLogger(__name__)


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Score `config.model` on the configured tasks; write record.json and scores.md to the run folder."""
    started = time.perf_counter()
    if not config.sts_tasks and not config.retrieval_tasks:
        raise UsageError("--sts-tasks none --retrieval-tasks none: nothing to evaluate; name at least one task")
    device = resolve_device(config.device)
    config = replace(config, precision=resolve_precision(config.precision, device))
    run_environment = environment(device)  # taken first: the code and packages as they were when the run began
    if config.mteb and (reason := hub_unreachable_reason()):
        raise UsageError(f"--mteb: mteb loads its task data from the Hugging Face hub, and {reason}; "
                         "run without --mteb here, or where the hub is reachable")
    if config.mteb and importlib.util.find_spec("mteb") is None:
        raise UsageError("--mteb needs the mteb package: pip install 'sbert-repro[mteb]'")
    if config.rerank:  # a bi-encoder given as --rerank fails in a second, before any model work
        cross_encoder.check_cross_encoder(config.rerank)
    progress.stage("loading the data")
    sts_sets, retrieval_sets = load_eval_sets(config.sts_tasks, config.retrieval_tasks, config.data_dir,
                                              config.retrieval_split)
    fit_on = read_sentences(config.fit_on, "--fit-on") if config.fit_on else None
    check_run_dir(config.output_dir, overwrite=config.overwrite)
    progress.stage("building the model")
    model = for_inference(build_model(config.model, config.pooling, device, config.trust_remote_code),
                          config.precision)
    model.max_seq_length = eval_max_seq_length(model, config.eval_max_seq_length)
    check_dims_fit(config.eval_dims, model.get_embedding_dimension(), "--dims")
    check_postprocess_fits(config.postprocess, model.get_embedding_dimension())
    rerank = (cross_encoder.Reranking(cross_encoder.pair_scorer(cross_encoder.load_cross_encoder(
        config.rerank, device, config.trust_remote_code), config.eval_batch_size), config.rerank_top_k)
        if config.rerank else None)
    # Last, once every check has passed; built beside the target and moved into place only when complete.
    with open_run_dir(config.output_dir, overwrite=config.overwrite, staged=True) as run_dir:
        progress.stage("scoring")
        postprocess = postprocessing_for(config, model, fit_on)
        scores, speeds = evaluate_tasks(model, sts_sets, retrieval_sets, config.eval_batch_size, compare=config,
                                        dims=config.eval_dims, postprocess=postprocess, rerank=rerank)
        if config.mteb:  # mteb's own numbers beside ours, for a cross-check where the hub is reachable
            registry = tuple(spec for spec in config.retrieval_tasks if spec in RETRIEVAL_TASKS)  # not folders
            scores.update(score_with_mteb(model, config.sts_tasks + registry, run_dir / "mteb"))
        record = {
            "kind": "evaluate",
            "config": config.to_dict(),
            "eval_max_seq_length": model.max_seq_length,
            "environment": run_environment,
            "data": {name: data.source for name, data in {**sts_sets, **retrieval_sets}.items()},
            "data_checks": data_checks(retrieval_sets),
            "scores": scores,
            "speeds": speeds,
            **({"postprocess": save_transforms(postprocess, run_dir)} if postprocess else {}),
            "wall_seconds": time.perf_counter() - started,
        }
        table = scores_table_markdown(scores, config.model, data_label(config.to_dict()))
        write_text_atomic(run_dir / "scores.md", table)
        write_json_atomic(run_dir / "record.json", record)
    print(table)
    return record


# What each timed stage is doing, for the line a Ctrl-C prints.
STAGES = {"load_data_s": "loading the data", "build_model_s": "building the model",
          "baseline_eval_s": "scoring the baseline", "mining_s": "mining hard negatives",
          "candidates_s": "searching with the raw model for the re-ranker", "train_s": "training",
          "finetuned_eval_s": "re-scoring", "save_model_s": "saving the model"}


@contextmanager
def _timed(timings: dict[str, float], name: str, seed: int | None = None) -> Iterator[None]:
    progress.stage(STAGES[name] + (f" (seed {seed})" if seed is not None else ""))
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


def finetune(config: TrainConfig) -> list[dict[str, Any]]:
    """Baseline -> fine-tune (on STSb train, or NLI, or NLI then STSb) -> re-score, once per seed; returns
    each seed's record.

    One seed: the run folder gets record.json, gains.md and model/. Several: one such folder per seed
    (seed-<n>/), and gains.md with the mean +- std over seeds beside them. The baseline does not depend on
    the seed, so it is scored once and shared. With --resume, finished seeds are kept, the baseline is read
    back from the records, and an interrupted seed continues from its latest checkpoint.
    """
    timings: dict[str, float] = {}
    device = resolve_device(config.device)
    config = replace(config, precision=resolve_precision(config.precision, device))
    run_environment = environment(device)  # taken first: the code and packages as they were when the run began

    # 1. Data: every set is loaded and checked before any model work, so bad input fails in seconds.
    with _timed(timings, "load_data_s"):
        data = load_finetune_data(config)

    # 2. Model: the raw encoder plus pooling ("Avg. BERT embeddings" for bert-base-uncased, mean), at the
    #    length it is scored at (training sets its own, and gives this one back).
    with _timed(timings, "build_model_s"):
        model = _raw_model(config, device)
        config = _fit_training_length(config, model)
        check_dims_fit(config.matryoshka_dims, model.get_embedding_dimension(), "--matryoshka-dims")
        check_postprocess_fits(config.postprocess, model.get_embedding_dimension())

    # The run folder, once every input has passed its checks (with --overwrite, a staging folder that replaces
    # the old run only when this one is complete). Under torchrun every process runs every step (and scores the
    # same numbers), and rank 0 alone writes.
    main = is_main_process()
    with (open_run_dir(config.output_dir, resume=config.resume, overwrite=config.overwrite) if main
          else nullcontext(shared_run_dir(config.output_dir, config.overwrite))) as run_dir:
        seed_dirs = {seed: run_dir if len(config.seeds) == 1 else run_dir / f"seed-{seed}" for seed in config.seeds}
        previous = {seed: resumable_record(folder, config) if config.resume else None
                    for seed, folder in seed_dirs.items()}

        # 3. Baseline: the raw model's scores (read back from the records of an interrupted run), and the hard
        #    negatives it mines.
        baseline, data = _baseline(config, data, model, previous, timings, run_dir if main else None)

        # 4-6, once per seed, each from the raw weights.
        records = []
        for number, (seed, seed_dir) in enumerate(seed_dirs.items()):
            if previous[seed] and previous[seed]["status"] == "complete":
                logger.info("seed %d is already complete in %s", seed, seed_dir)
                records.append(previous[seed])
                continue
            transformers.set_seed(seed)  # before the model is built again: its build may draw random numbers
            if number > 0 and config.objective not in CROSS_ENCODER_OBJECTIVES:  # a cross-encoder builds its own
                model = _raw_model(config, device)
            seed_config = replace(config, seed=seed)
            record = _seed_record(seed_config, model, run_environment, data, baseline, previous[seed])
            records.append(_run_seed(model, record, data, seed_config, seed_dir, dict(timings), device,
                                     run_dir if main else None))

        table = _gain_table(config, baseline["scores"], [r["finetuned"]["scores"] for r in records], config.seeds)
        if main and len(config.seeds) > 1:
            write_text_atomic(run_dir / "gains.md", table)
    if main:  # only now is the run in its folder (a replacement is moved in as the block ends)
        print(table)
        logger.info("run written to %s", config.output_dir.resolve())
    return records


def _raw_model(config: TrainConfig, device: str) -> SentenceTransformer:
    """The raw encoder plus pooling, at the length it is scored at (training sets its own, and gives this one back)."""
    model = build_model(config.model, config.pooling, device, config.trust_remote_code)
    model.max_seq_length = eval_max_seq_length(model, config.eval_max_seq_length)
    return model


def _baseline(config: TrainConfig, data: FinetuneData, model: SentenceTransformer,
              previous: dict[int, dict[str, Any] | None], timings: dict[str, float], run_dir: Path | None
              ) -> tuple[dict[str, Any], FinetuneData]:
    """The raw model's scores, read back from an interrupted run's records where it has them; and with
    --hard-negatives, the training pairs with the negatives the raw model mines, and a re-ranker's candidates (the
    raw model's search results), once for every seed."""
    with _timed(timings, "baseline_eval_s"):
        baseline = next((record["baseline"] for record in previous.values() if record), None)
        if baseline is None:
            encoder = for_inference(model, config.precision)
            postprocess = postprocessing_for(config, encoder, data.fit_on)  # --postprocess: the baseline's alone
            scores, speeds = evaluate_tasks(encoder, data.sts_sets, data.retrieval_sets, config.eval_batch_size,
                                            dims=config.matryoshka_dims, postprocess=postprocess)
            baseline = {"scores": scores, "speeds": speeds}
            if postprocess is not None:
                baseline["postprocess"] = (save_transforms(postprocess, run_dir) if run_dir
                                           else {"option": postprocess.option})
    if config.hard_negatives:
        with _timed(timings, "mining_s"):
            data = mine_hard_negatives(config, data, model, run_dir)
    if config.objective == "cross-encoder-retrieval":
        with _timed(timings, "candidates_s"):
            data = rerank_candidates(config, data, model)
    return baseline, data


def _fit_training_length(config: TrainConfig, model: SentenceTransformer) -> TrainConfig:
    """A --max-seq-length given must fit the model's positions (checked before training, not mid-way); an
    objective's own default (retrieval: 256) is cut to the length the model is scored at. The paper's 128 fits
    any BERT."""
    if any(arg.split("=")[0] == "--max-seq-length" for arg in config.argv):
        check_positions(model, config.max_seq_length, "--max-seq-length")
        return config
    if config.objective in OBJECTIVE_DEFAULTS:
        positions = position_limit(model) or model.max_seq_length
        return replace(config, max_seq_length=min(config.max_seq_length, model.max_seq_length, positions))
    return config


def _seed_record(config: TrainConfig, model: SentenceTransformer, run_environment: dict[str, Any],
                 data: FinetuneData, baseline: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """A seed's record as its training starts: "incomplete" until the last file of the seed is written."""
    return {"kind": "finetune", "status": "incomplete", "config": config.to_dict(),
            "eval_max_seq_length": model.max_seq_length, "environment": run_environment, "data": data.sources(),
            "data_checks": data_checks(data.retrieval_sets),
            "baseline": {**baseline, "baseline_is": cross_encoder.BASELINE_IS}
            if config.objective in CROSS_ENCODER_OBJECTIVES else baseline,
            **({"finetuned_is": cross_encoder.RERANKED_IS} if config.objective == "cross-encoder-retrieval" else {}),
            **({"retrieval_training": {**data.retrieval_training.split, "hard_negatives": data.hard_negatives}}
               if data.retrieval_training else {}),
            # stages an interrupted run finished, kept from its record until they are done again or reused
            "training_stages": list((previous or {}).get("training_stages", []))}


def _run_seed(model: SentenceTransformer, record: dict[str, Any], data: FinetuneData, config: TrainConfig,
              seed_dir: Path, timings: dict[str, float], device: str, run_dir: Path | None) -> dict[str, Any]:
    """Steps 4-6 for one seed: train stage by stage, re-score, save; `record` completed and returned. Only the
    main process (`run_dir` given) writes."""
    def save_record() -> None:
        if run_dir is not None:
            write_json_atomic(seed_dir / RECORD, record)

    save_record()
    # 4. Train: the siamese bi-encoder, stage by stage (CosineSimilarityLoss on STSb train by default), or the
    #    cross-encoder (cross_encoder.py); each stage keeps its best checkpoint by validation.
    with _timed(timings, "train_s", config.seed):
        model = (cross_encoder.train_seed(record, data.train_sets[config.objective], data.validation, config,
                                          seed_dir, device, save_record, data.validation_candidates)
                 if config.objective in CROSS_ENCODER_OBJECTIVES
                 else _train_stages(model, record, data, config, seed_dir, device, save_record))

    # 5. Re-score the fine-tuned model on the same tasks, at the same sequence length as the baseline.
    with _timed(timings, "finetuned_eval_s", config.seed):
        finetuned, finetuned_speeds = _rescore(model, data, config)

    # 6. Save the model (it reloads with SentenceTransformer(path), a cross-encoder's with CrossEncoder(path)), the
    #    gain table and the record.
    with _timed(timings, "save_model_s", config.seed):
        if run_dir is not None:
            model.save(str(seed_dir / "model"))
    timings["total_s"] = sum(timings.values())
    record.update({"status": "complete", "finetuned": {"scores": finetuned, "speeds": finetuned_speeds},
                   "training": record["training_stages"][-1], "timings": timings})
    if run_dir is not None:
        name_final_paths(record["training_stages"], run_dir, config.output_dir.resolve())
        write_text_atomic(seed_dir / "gains.md",
                          _gain_table(config, record["baseline"]["scores"], [finetuned], [config.seed]))
        write_json_atomic(seed_dir / RECORD, record)
        # Only now, with the run complete: the best weights are model/, and the Trainer's checkpoints (with
        # optimizer state, three times the model's size) only mattered while it was unfinished.
        shutil.rmtree(seed_dir / "checkpoints", ignore_errors=True)
    return record


def _rescore(model: SentenceTransformer | cross_encoder.CrossEncoder, data: FinetuneData, config: TrainConfig
             ) -> tuple[dict[str, float], dict[str, float]]:
    """The fine-tuned model's scores and speeds: a bi-encoder's on every task; a cross-encoder's predicted scores on
    the STS pairs; a re-ranker's on the raw model's search (searched once, in _baseline) with each query's top
    --rerank-top-k re-ranked."""
    if config.objective == "cross-encoder":
        return cross_encoder.score_sts_tasks(cross_encoder.pair_scorer(model, config.eval_batch_size), data.sts_sets)
    if config.objective == "cross-encoder-retrieval":
        assert data.search_candidates is not None and config.rerank_top_k is not None
        return cross_encoder.score_reranked(data.search_candidates, data.retrieval_sets, cross_encoder.Reranking(
            cross_encoder.pair_scorer(model, config.eval_batch_size), config.rerank_top_k))
    return evaluate_tasks(for_inference(model, config.precision), data.sts_sets, data.retrieval_sets,
                          config.eval_batch_size, dims=config.matryoshka_dims)


def _train_stages(model: SentenceTransformer, record: dict[str, Any], data: FinetuneData, config: TrainConfig,
                  seed_dir: Path, device: str, save_record: Any) -> SentenceTransformer:
    """The bi-encoder's training stages in order; stages an interrupted run finished are not trained again: their
    best weights are loaded back."""
    scoring_length = model.max_seq_length
    finished = {stage["objective"]: stage for stage in record["training_stages"]}
    record["training_stages"] = []
    for objective in training_stages(config):
        if objective in finished:
            model = SentenceTransformer(finished[objective]["best_checkpoint"], device=device,
                                        trust_remote_code=config.trust_remote_code)
            model.max_seq_length = scoring_length
            record["training_stages"].append(finished[objective])
            continue
        record["training_stages"].append(
            train_model(model, objective, data.train_sets[objective], data.validation, config,
                        seed_dir / "checkpoints" / objective, device, resume=config.resume))
        save_record()
    return model


def _gain_table(config: TrainConfig, baseline: dict[str, float], finetuned_per_seed: list[dict[str, float]],
                seeds: tuple[int, ...] | list[int]) -> str:
    rows = gain_rows(baseline, finetuned_per_seed, config.pooling, config.objective)
    return gain_table_markdown(rows, config.model, data_label(config.to_dict()), seeds)
