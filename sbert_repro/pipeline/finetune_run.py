"""The reproduction, step by step: the raw model's baseline, the siamese cosine fine-tune, the re-score.

`finetune` reads like the sentence-transformers STSb example: (1) data, (2) model, (3) baseline,
(4) train, (5) re-score, (6) save and report. `evaluate` (evaluate_run.py) is steps 1-3 alone, for any model.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import transformers
from sentence_transformers import SentenceTransformer

from sbert_repro.config.encoding import given_pooling
from sbert_repro.config.hardware import resolved_with_reason
from sbert_repro.config.objectives import Objective, get_objective
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.hub import revision_mismatches
from sbert_repro.data.loaders import data_checks
from sbert_repro.evaluation.mteb_results import model_folder, write_mteb_results
from sbert_repro.evaluation.postprocessing import postprocessing_for, save_transforms
from sbert_repro.evaluation.reranking import Reranking, score_reranked
from sbert_repro.evaluation.run_files import TaskRun, write_task_runs
from sbert_repro.evaluation.scoring import OnDisk, evaluate_tasks, score_sts_tasks
from sbert_repro.evaluation.truncation import check_dims_fit
from sbert_repro.model.cross_encoder import BASELINE_IS, RERANKED_IS, CrossEncoder, fit_length, pair_scorer
from sbert_repro.model.encoder import (
    build_model,
    check_positions,
    eval_max_seq_length,
    module_names,
    position_limit,
    resolve_prompts,
    run_fingerprints,
)
from sbert_repro.model.precision import for_inference
from sbert_repro.model.transforms import check_postprocess_fits
from sbert_repro.pipeline.finetune_data import (
    MINING_CACHE,
    FinetuneData,
    load_finetune_data,
    mine_hard_negatives,
    rerank_candidates,
)
from sbert_repro.pipeline.model_card import append_scores, describe_training
from sbert_repro.report.gain_table import gain_rows, gain_table_markdown
from sbert_repro.report.labels import data_label
from sbert_repro.runs import progress
from sbert_repro.runs.distributed import join_processes, on_main_process
from sbert_repro.runs.environment import environment, is_main_process
from sbert_repro.runs.folders import run_relative, shared_run_dir, writes_to
from sbert_repro.runs.records import (
    BASELINE,
    FINETUNE_KIND,
    MTEB_FOLDER,
    RECORD,
    RUN_DIR_OPTIONS,
    open_run_dir,
    resumable_record,
    write_record,
    write_text_atomic,
)
from sbert_repro.train.checkpoints import remove_checkpoints
from sbert_repro.train.cross_encoder_training import train_new_cross_encoder
from sbert_repro.train.losses import training_stages
from sbert_repro.train.trainer import train_bi_encoder

logger = logging.getLogger(__name__)


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
    config, precision_reason = resolved_with_reason(config)  # the device and number format, once, for every step
    run_environment = environment(config.device, precision_reason)  # taken first: the code and packages as it began
    join_processes(config.device)  # under torchrun: the main process alone does the once-only work below

    # 1. Data: every set is loaded and checked before any model work, so bad input fails in seconds.
    with _timed(timings, "load_data_s"):
        data = load_finetune_data(config)

    # 2. Model: the raw encoder plus pooling ("Avg. BERT embeddings" for bert-base-uncased, mean), at the
    #    length it is scored at (training sets its own, and gives this one back).
    with _timed(timings, "build_model_s"):
        model = _raw_model(config)
        resolve_prompts(model, config)  # a prompt name the model lacks stops the run here
        config = _fit_training_length(config, model)
        check_dims_fit(config.matryoshka_dims, model.get_embedding_dimension(), "--matryoshka-dims")
        check_postprocess_fits(config.postprocess, model.get_embedding_dimension())
        data = replace(data, fingerprints=run_fingerprints(model, data.sets()))

    # The run folder, once every input has passed its checks (with --overwrite, a staging folder that replaces
    # the old run only when this one is complete). Under torchrun every process trains; rank 0 alone scores,
    # mines and writes, and hands the others what it found.
    main = is_main_process()
    with (open_run_dir(config.output_dir, config.resume, config.overwrite, options=RUN_DIR_OPTIONS,
                       kind=FINETUNE_KIND) if main
          else nullcontext(shared_run_dir(config.output_dir, config.overwrite))) as run_dir:
        seed_dirs = {seed: run_dir if len(config.seeds) == 1 else run_dir / f"seed-{seed}" for seed in config.seeds}
        previous = {seed: resumable_record(folder, config, data.fingerprints) if config.resume else None
                    for seed, folder in seed_dirs.items()}

        # 3. Baseline: the raw model's scores (read back from the records of an interrupted run), and the hard
        #    negatives it mines.
        baseline, data = _baseline(config, data, model, previous, timings, run_dir if main else None)

        # 4-6, once per seed, each from the raw weights.
        records = [_each_seed(config, model, number, seed_dirs[seed], previous[seed], run_environment, data,
                              baseline, timings, run_dir if main else None)
                   for number, seed in enumerate(config.seeds)]
        table = _gain_table(config, baseline["scores"], [r["finetuned"]["scores"] for r in records], config.seeds,
                            data.sources().values())
        if main and len(config.seeds) > 1:
            write_text_atomic(run_dir / "gains.md", table)
        if main:  # the corpus's vectors, kept for a resume until every seed is trained: scratch now
            shutil.rmtree(run_dir / MINING_CACHE, ignore_errors=True)
    if main:  # only now is the run in its folder (a replacement is moved in as the block ends)
        print(progress.terminal_lines(table))
        logger.info("run written to %s", config.output_dir.resolve())
    return records


def _each_seed(config: TrainConfig, model: SentenceTransformer, number: int, seed_dir: Path,
               previous: dict[str, Any] | None, run_environment: dict[str, Any], data: FinetuneData,
               baseline: dict[str, Any], timings: dict[str, float], run_dir: Path | None) -> dict[str, Any]:
    """Steps 4-6 for the seed `number` of config.seeds, from the raw weights; a seed an interrupted run completed
    is its record as it stands."""
    seed = config.seeds[number]
    if previous and previous["status"] == "complete":
        logger.info("seed %d is already complete in %s", seed, seed_dir)
        return previous
    transformers.set_seed(seed)  # before the model is built again: its build may draw random numbers
    if number > 0 and not get_objective(config.objective).cross_encoder:  # a cross-encoder builds its own
        model = _raw_model(config)
    seed_config = replace(config, seed=seed)
    record = _seed_record(seed_config, model, run_environment, data, baseline, previous)
    return _run_seed(model, record, data, seed_config, seed_dir, dict(timings), run_dir)


def _raw_model(config: TrainConfig) -> SentenceTransformer:
    """The raw encoder plus pooling, at the length it is scored at (training sets its own, and gives this one back)."""
    model = build_model(config.model, given_pooling(config), config.device, config.trust_remote_code)
    model.max_seq_length = eval_max_seq_length(model, config.eval_max_seq_length)
    return model


def _baseline(config: TrainConfig, data: FinetuneData, model: SentenceTransformer,
              previous: dict[int, dict[str, Any] | None], timings: dict[str, float], run_dir: Path | None
              ) -> tuple[dict[str, Any], FinetuneData]:
    """The raw model's scores, read back from an interrupted run's records where it has them; and with
    --hard-negatives, the training pairs with the negatives the raw model mines, and a re-ranker's candidates (the
    raw model's search results), once for every seed. Under torchrun the main process does each, and hands the
    others its result."""
    with _timed(timings, "baseline_eval_s"):
        # read back or scored by the main process, so that every process hands results over as many times
        baseline = on_main_process(lambda: next((record["baseline"] for record in previous.values() if record), None)
                                   or _score_baseline(config, data, model, run_dir), "scoring the baseline")
    every_seed_done = all(record and record.get("status") == "complete" for record in previous.values())
    if config.hard_negatives and not every_seed_done:  # a finished run resumed trains nothing: nothing to mine
        with _timed(timings, "mining_s"):
            data = replace(data, **on_main_process(lambda: mine_hard_negatives(config, data, model, run_dir),
                                                   "mining hard negatives"))
    if get_objective(config.objective).scoring == "reranked-search":
        with _timed(timings, "candidates_s"):
            data = replace(data, **on_main_process(lambda: rerank_candidates(config, data, model),
                                                   "searching for the re-ranker's candidates"))
    return baseline, data


def _score_baseline(config: TrainConfig, data: FinetuneData, model: SentenceTransformer,
                    run_dir: Path | None) -> dict[str, Any]:
    """The raw model's scores and speeds on every task, with its run files written (`run_dir` given)."""
    encoder = for_inference(model, config.precision)
    postprocess = postprocessing_for(config, encoder, data.fit_on)  # --postprocess: the baseline's alone
    runs: dict[str, TaskRun] = {}
    scores, speeds = evaluate_tasks(encoder, data.sts_sets, data.retrieval_sets, config.eval_batch_size,
                                    dims=config.matryoshka_dims, postprocess=postprocess,
                                    prompts=resolve_prompts(model, config), runs=runs,
                                    on_disk=_vectors_on_disk(run_dir / BASELINE if run_dir else None))
    baseline: dict[str, Any] = {"scores": scores, "speeds": speeds}
    if run_dir is not None:  # the raw model's run files, beside the seeds' (compare RUN/baseline RUN)
        # named relative to the run folder (which holds baseline/), not to a seed's folder
        baseline["retrieval_files"] = {
            task: {kind: f"baseline/{name}" for kind, name in files.items()}
            for task, files in write_task_runs(run_dir / BASELINE, runs, config.model).items()}
    if postprocess is not None:
        baseline["postprocess"] = (save_transforms(postprocess, run_dir) if run_dir
                                   else {"option": postprocess.option})
    return baseline


def _fit_training_length(config: TrainConfig, model: SentenceTransformer) -> TrainConfig:
    """A --max-seq-length given must fit the model's positions (checked before training, not mid-way); an
    objective's own default (retrieval: 256) is cut to the length the model is scored at. The paper's 128 fits
    any BERT, and is cut only for an objective with defaults of its own."""
    if "max_seq_length" not in config.defaulted:
        check_positions(model, config.max_seq_length, "--max-seq-length")
        return config
    if get_objective(config.objective).defaults:
        positions = position_limit(model) or model.max_seq_length
        return replace(config, max_seq_length=min(config.max_seq_length, model.max_seq_length, positions))
    return config


def _seed_record(config: TrainConfig, model: SentenceTransformer, run_environment: dict[str, Any],
                 data: FinetuneData, baseline: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """A seed's record as its training starts: "incomplete" until the last file of the seed is written."""
    objective = get_objective(config.objective)
    return {"kind": FINETUNE_KIND, "status": "incomplete", "config": config.to_dict(),
            "modules": module_names(model), "fingerprints": data.fingerprints,
            "prompts": resolve_prompts(model, config).to_dict(),
            "eval_max_seq_length": model.max_seq_length, "environment": run_environment, "data": data.sources(),
            "data_checks": data_checks(data.retrieval_sets),
            "revision_mismatches": revision_mismatches(data.sources()),
            "baseline": {**baseline, "baseline_is": BASELINE_IS} if objective.cross_encoder else baseline,
            **_record_sections(objective, data),
            # stages an interrupted run finished, kept from its record until they are done again or reused
            "training_stages": list((previous or {}).get("training_stages", []))}


def _record_sections(objective: Objective, data: FinetuneData) -> dict[str, Any]:
    """The record sections the objective writes beyond every fine-tune's (the registry's `sections`)."""
    def retrieval_training() -> dict[str, Any]:
        assert data.retrieval_training is not None  # loaded for every stage on --train-task's judgements
        return {**data.retrieval_training.split, "hard_negatives": data.hard_negatives}

    sections: dict[str, Callable[[], Any]] = {"finetuned_is": lambda: RERANKED_IS,
                                              "retrieval_training": retrieval_training}
    return {name: sections[name]() for name in objective.sections}


def _run_seed(model: SentenceTransformer, record: dict[str, Any], data: FinetuneData, config: TrainConfig,
              seed_dir: Path, timings: dict[str, float], run_dir: Path | None) -> dict[str, Any]:
    """Steps 4-6 for one seed: train stage by stage, re-score, save; `record` completed and returned. Only the
    main process (`run_dir` given) writes."""
    def save_record() -> None:
        if run_dir is not None:
            write_record(seed_dir / RECORD, record)

    save_record()
    # 4. Train: the siamese bi-encoder, stage by stage (CosineSimilarityLoss on STSb train by default), or the
    #    cross-encoder; each stage keeps its best checkpoint by validation.
    with _timed(timings, "train_s", config.seed):
        model = _train_stages(model, record, data, config, seed_dir, save_record)

    # 5. Re-score the fine-tuned model on the same tasks, at the same sequence length as the baseline.
    with _timed(timings, "finetuned_eval_s", config.seed):
        runs: dict[str, TaskRun] = {}
        finetuned, finetuned_speeds = on_main_process(lambda: _rescore(model, data, config, runs, seed_dir),
                                                      "re-scoring")

    # 6. Save the model (it reloads with SentenceTransformer(path), a cross-encoder's with CrossEncoder(path)), the
    #    gain table and the record.
    with _timed(timings, "save_model_s", config.seed):
        if run_dir is not None:
            losses = describe_training(model, config, record)  # the card names the base model, data and loss
            with writes_to(seed_dir / "model"):
                model.save(str(seed_dir / "model"))
    timings["total_s"] = sum(timings.values())
    record.update({"status": "complete", "finetuned": {"scores": finetuned, "speeds": finetuned_speeds},
                   "training": record["training_stages"][-1], "timings": timings})
    if run_dir is not None:
        append_scores(seed_dir / "model", config, record, losses)
        record["finetuned"]["retrieval_files"] = write_task_runs(seed_dir, runs, f"{config.model}-finetuned")
        # in MTEB's format too: the raw model's scores under its name, the fine-tuned model's under the run's
        record["mteb_format"] = _mteb_format(config, record["baseline"], finetuned, finetuned_speeds, seed_dir)
        write_text_atomic(seed_dir / "gains.md",
                          _gain_table(config, record["baseline"]["scores"], [finetuned], [config.seed],
                                      record.get("data", {}).values()))
        write_record(seed_dir / RECORD, record)
        # Only now, with the run complete: the best weights are model/, and the Trainer's checkpoints (with
        # optimizer state, three times the model's size) only mattered while it was unfinished. Any set aside
        # as unusable stay.
        remove_checkpoints(seed_dir / "checkpoints")
    return record


def _mteb_format(config: TrainConfig, baseline: dict[str, Any], finetuned: dict[str, float],
                 finetuned_speeds: dict[str, float], seed_dir: Path) -> list[str]:
    """Both models' scores as MTEB's result files: the raw model's under its name (unless post-processed: not the
    model's own vectors), the fine-tuned one's under its run's (and seed's), never the raw model's folder."""
    trained = config.output_dir.resolve().name + (f"-{seed_dir.name}" if len(config.seeds) > 1 else "")
    if model_folder(trained) == model_folder(config.model):
        trained += "-finetuned"
    folder, split = seed_dir / MTEB_FOLDER, config.retrieval_split
    raw = [] if config.postprocess else write_mteb_results(folder, config.model, baseline["scores"],
                                                           baseline.get("speeds", {}), seed_dir, split)
    return [*raw, *write_mteb_results(folder, trained, finetuned, finetuned_speeds, seed_dir, split)]


def _rescore(model: SentenceTransformer | CrossEncoder, data: FinetuneData, config: TrainConfig,
             runs: dict[str, TaskRun], seed_dir: Path) -> tuple[dict[str, float], dict[str, float]]:
    """The fine-tuned model's scores and speeds: a bi-encoder's on every task; a cross-encoder's predicted scores on
    the STS pairs; a re-ranker's on the raw model's search (searched once, in _baseline) with each query's top
    --rerank-top-k re-ranked. A bi-encoder's exact searches are kept in `runs`."""
    scoring = get_objective(config.objective).scoring
    if scoring == "pair-scores":
        return score_sts_tasks(pair_scorer(model, config.eval_batch_size, config.precision), data.sts_sets)
    if scoring == "reranked-search":
        assert data.search_candidates is not None and config.rerank_top_k is not None
        return score_reranked(data.search_candidates, data.retrieval_sets, Reranking(
            pair_scorer(model, config.eval_batch_size, config.precision), config.rerank_top_k))
    return evaluate_tasks(for_inference(model, config.precision), data.sts_sets, data.retrieval_sets,
                          config.eval_batch_size, dims=config.matryoshka_dims,
                          prompts=resolve_prompts(model, config), runs=runs, on_disk=_vectors_on_disk(seed_dir))


def _vectors_on_disk(folder: Path | None) -> OnDisk | None:
    """Where scoring encodes each retrieval task's corpus (folder/vectors/<task>/, deleted once it is scored), as
    `evaluate` does: a corpus of millions is never all in memory."""
    return OnDisk(folder / "vectors") if folder is not None else None


def _train_stages(model: SentenceTransformer, record: dict[str, Any], data: FinetuneData, config: TrainConfig,
                  seed_dir: Path, save_record: Callable[[], None]) -> SentenceTransformer | CrossEncoder:
    """The objective's training stages in order, each appended to record["training_stages"] and the record saved;
    a stage an interrupted run finished is not trained again: its best weights are loaded back."""
    scoring_length = model.max_seq_length
    # A stage without a best checkpoint (never validated) cannot be loaded back: it is trained again.
    finished = {entry["objective"]: entry for entry in record["training_stages"] if entry.get("best_checkpoint")}
    record["training_stages"] = []
    for stage in training_stages(config):
        if stage in finished:
            model = _finished_stage(seed_dir / finished[stage]["best_checkpoint"], config, scoring_length)
            record["training_stages"].append(finished[stage])
            continue
        checkpoints = seed_dir / "checkpoints" / stage
        if get_objective(stage).cross_encoder:  # a new cross-encoder, its head drawn from the seed
            model, trained = train_new_cross_encoder(data.train_sets[stage], data.validation, config, checkpoints,
                                                     data.validation_candidates)
        else:
            trained = train_bi_encoder(model, stage, data.train_sets[stage], data.validation, config, checkpoints)
        # Checkpoint paths relative to the seed's folder: a staged run is moved into place, and any run may be
        # moved by hand before --resume.
        record["training_stages"].append({**trained, **{key: run_relative(trained[key], seed_dir)
                                                         for key in ("best_checkpoint", "resumed_from")}})
        save_record()
    return model


def _finished_stage(checkpoint: Path, config: TrainConfig, scoring_length: int) -> SentenceTransformer | CrossEncoder:
    """The best weights of a stage an interrupted run finished: a cross-encoder at its training length, a bi-encoder
    at the length it is scored at."""
    if get_objective(config.objective).cross_encoder:
        return fit_length(CrossEncoder(str(checkpoint), device=config.device,
                                       trust_remote_code=config.trust_remote_code), config.max_seq_length)
    model = SentenceTransformer(str(checkpoint), device=config.device, trust_remote_code=config.trust_remote_code)
    model.max_seq_length = scoring_length
    return model


def _gain_table(config: TrainConfig, baseline: dict[str, float], finetuned_per_seed: list[dict[str, float]],
                seeds: tuple[int, ...] | list[int], sources: Iterable[str]) -> str:
    rows = gain_rows(baseline, finetuned_per_seed, config.pooling, config.objective)
    return gain_table_markdown(rows, config.model, data_label(config.data_dir, sources), seeds)
