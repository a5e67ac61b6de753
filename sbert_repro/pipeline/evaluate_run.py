"""`sbert-repro evaluate`: score any model on the configured tasks, without training (steps 1-3 of the reproduction)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from sbert_repro.config.encoding import EvaluateConfig, given_pooling
from sbert_repro.config.hardware import resolved_with_reason
from sbert_repro.data.hub import hub_unreachable_reason, revision_mismatches
from sbert_repro.data.loaders import RetrievalData, data_checks, load_eval_sets
from sbert_repro.data.sources import read_sentences
from sbert_repro.data.tasks import RETRIEVAL_TASKS
from sbert_repro.errors import UsageError
from sbert_repro.evaluation.mteb_results import write_mteb_results
from sbert_repro.evaluation.postprocessing import postprocessing_for, save_transforms
from sbert_repro.evaluation.reranking import Reranking
from sbert_repro.evaluation.run_files import TaskRun, write_task_runs
from sbert_repro.evaluation.scoring import (
    OnDisk,
    check_options_fit,
    evaluate_tasks,
    score_with_mteb,
)
from sbert_repro.model.cross_encoder import check_cross_encoder, load_cross_encoder, pair_scorer
from sbert_repro.model.encoder import (
    build_model,
    eval_max_seq_length,
    module_names,
    resolve_prompts,
    run_fingerprints,
)
from sbert_repro.model.precision import for_inference
from sbert_repro.report.gain_table import scores_table_markdown
from sbert_repro.report.labels import data_label
from sbert_repro.runs import progress
from sbert_repro.runs.environment import environment
from sbert_repro.runs.records import (
    EVALUATE_KIND,
    MTEB_FOLDER,
    check_run_dir,
    open_run_dir,
    write_record,
    write_text_atomic,
)
from sbert_repro.search.store import check_room, encoding_pool

VECTORS = "vectors"  # the run folder's scratch space for each retrieval task's corpus vectors while it is scored


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Score `config.model` on the configured tasks; write record.json and scores.md to the run folder."""
    started = time.perf_counter()
    if not config.sts_tasks and not config.retrieval_tasks:
        raise UsageError("--sts-tasks none --retrieval-tasks none: nothing to evaluate; name at least one task")
    config, precision_reason = resolved_with_reason(config)  # the device and number format, once, for every step
    run_environment = environment(config.device, precision_reason)  # taken first: the code and packages as it began
    _check_mteb_and_rerank(config)
    progress.stage("loading the data")
    sts_sets, retrieval_sets = load_eval_sets(config.sts_tasks, config.retrieval_tasks, config.data_dir,
                                              config.retrieval_split)
    fit_on = read_sentences(config.fit_on, "--fit-on") if config.fit_on else None
    check_run_dir(config.output_dir, overwrite=config.overwrite, kind=EVALUATE_KIND)
    progress.stage("building the model")
    base = build_model(config.model, given_pooling(config), config.device, config.trust_remote_code)
    modules, prompts = module_names(base), resolve_prompts(base, config)
    fingerprints = run_fingerprints(base, {**sts_sets, **retrieval_sets})
    model = for_inference(base, config.precision)
    model.max_seq_length = eval_max_seq_length(model, config.eval_max_seq_length)
    check_options_fit(config, model.get_embedding_dimension(), retrieval_sets)  # before anything is encoded
    _check_vectors_fit(config, model.get_embedding_dimension(), retrieval_sets)
    rerank = (Reranking(pair_scorer(load_cross_encoder(
        config.rerank, config.device, config.trust_remote_code), config.eval_batch_size, config.precision),
        config.rerank_top_k)
        if config.rerank else None)
    # Last, once every check has passed; built beside the target and moved into place only when complete.
    with open_run_dir(config.output_dir, overwrite=config.overwrite, staged=True, kind=EVALUATE_KIND) as run_dir:
        progress.stage("scoring")
        postprocess = postprocessing_for(config, model, fit_on)
        runs: dict[str, TaskRun] = {}
        with encoding_pool(model, 1, config.device) as pool:  # several GPUs: one process each
            scores, speeds = evaluate_tasks(model, sts_sets, retrieval_sets, config.eval_batch_size, compare=config,
                                            dims=config.eval_dims, postprocess=postprocess, rerank=rerank,
                                            prompts=prompts, runs=runs, on_disk=OnDisk(run_dir / VECTORS, pool=pool))
        mteb = _mteb(config, model, run_dir, scores)
        record = {
            "kind": EVALUATE_KIND,
            "config": config.to_dict(),
            "modules": modules,
            "fingerprints": fingerprints,
            "prompts": prompts.to_dict(),
            "eval_max_seq_length": model.max_seq_length,
            "environment": run_environment,
            "data": (sources := {name: data.source for name, data in {**sts_sets, **retrieval_sets}.items()}),
            "data_checks": data_checks(retrieval_sets),
            "revision_mismatches": revision_mismatches(sources),
            "scores": scores,
            "speeds": speeds,
            **({"postprocess": save_transforms(postprocess, run_dir)} if postprocess else {}),
            "retrieval_files": write_task_runs(run_dir, runs, config.model),
            "mteb_format": _mteb_format(config, scores, speeds, run_dir),
            **mteb,
            "wall_seconds": time.perf_counter() - started,
        }
        table = scores_table_markdown(scores, config.model, data_label(config.data_dir, sources.values()))
        write_text_atomic(run_dir / "scores.md", table)
        write_record(run_dir / "record.json", record)
    print(progress.terminal_lines(table))
    return record


def _check_mteb_and_rerank(config: EvaluateConfig) -> None:
    """--mteb needs the hub and the mteb package; --rerank a cross-encoder (a bi-encoder fails in a second)."""
    if config.mteb and (reason := hub_unreachable_reason()):
        raise UsageError(f"--mteb: mteb loads its task data from the Hugging Face hub, and {reason}; "
                         "run without --mteb here, or where the hub is reachable")
    if config.mteb and importlib.util.find_spec("mteb") is None:
        raise UsageError("--mteb needs the mteb package: pip install 'sbert-repro[mteb]'")
    if config.rerank:
        check_cross_encoder(config.rerank)


def _check_vectors_fit(config: EvaluateConfig, dim: int, retrieval_sets: dict[str, RetrievalData]) -> None:
    """Each retrieval task's corpus vectors are on disk while it is scored: room for the largest, beside the run
    folder, before anything is encoded."""
    if retrieval_sets:
        largest = max(retrieval_sets, key=lambda name: len(retrieval_sets[name].corpus))
        check_room(config.output_dir.parent, {f"{largest}'s vectors": 4 * dim * len(retrieval_sets[largest].corpus)},
                   f"--output-dir {config.output_dir}: scoring")


def _mteb_format(config: EvaluateConfig, scores: dict[str, float], speeds: dict[str, float], run_dir: Path
                 ) -> list[str]:
    """The scores as MTEB's result files: the model's own only (post-processed vectors are another model's)."""
    return [] if config.postprocess else write_mteb_results(run_dir / MTEB_FOLDER, config.model, scores, speeds,
                                                            run_dir, config.retrieval_split)


def _mteb(config: EvaluateConfig, model: SentenceTransformer, run_dir: Path, scores: dict[str, float]
          ) -> dict[str, Any]:
    """With --mteb, mteb's own numbers added to `scores` beside ours (a cross-check where the hub is reachable), and
    what the record keeps of mteb: its result files, as its ResultCache wrote them, and its error where it failed
    (our own scores are kept then)."""
    if not config.mteb:
        return {}
    registry = tuple(spec for spec in config.retrieval_tasks if spec in RETRIEVAL_TASKS)  # not folders
    mteb_scores, error = score_with_mteb(model, config.sts_tasks + registry, run_dir / "mteb", config.model)
    scores.update(mteb_scores)
    files = sorted(str(path.relative_to(run_dir)) for path in (run_dir / "mteb").rglob("*.json"))
    return {"mteb_results": files, **({"mteb_error": error} if error else {})}
