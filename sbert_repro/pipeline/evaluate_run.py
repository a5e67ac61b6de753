"""`sbert-repro evaluate`: score any model on the configured tasks, without training (steps 1-3 of the reproduction)."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

from sbert_repro.config.encoding import EvaluateConfig
from sbert_repro.config.hardware import resolved
from sbert_repro.data.hub import hub_unreachable_reason
from sbert_repro.data.loaders import data_checks, load_eval_sets
from sbert_repro.data.sources import read_sentences
from sbert_repro.data.tasks import RETRIEVAL_TASKS
from sbert_repro.errors import UsageError
from sbert_repro.evaluation.reranking import Reranking
from sbert_repro.evaluation.scoring import evaluate_tasks, postprocessing_for, save_transforms, score_with_mteb
from sbert_repro.evaluation.truncation import check_dims_fit
from sbert_repro.model.cross_encoder import check_cross_encoder, load_cross_encoder, pair_scorer
from sbert_repro.model.encoder import build_model, eval_max_seq_length, for_inference
from sbert_repro.model.transforms import check_postprocess_fits
from sbert_repro.report.gain_table import scores_table_markdown
from sbert_repro.report.labels import data_label
from sbert_repro.runs import progress
from sbert_repro.runs.environment import environment
from sbert_repro.runs.records import (
    check_run_dir,
    open_run_dir,
    write_json_atomic,
    write_text_atomic,
)


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Score `config.model` on the configured tasks; write record.json and scores.md to the run folder."""
    started = time.perf_counter()
    if not config.sts_tasks and not config.retrieval_tasks:
        raise UsageError("--sts-tasks none --retrieval-tasks none: nothing to evaluate; name at least one task")
    config = resolved(config)  # the device and number format, once, for every step below
    run_environment = environment(config.device)  # taken first: the code and packages as the run began
    if config.mteb and (reason := hub_unreachable_reason()):
        raise UsageError(f"--mteb: mteb loads its task data from the Hugging Face hub, and {reason}; "
                         "run without --mteb here, or where the hub is reachable")
    if config.mteb and importlib.util.find_spec("mteb") is None:
        raise UsageError("--mteb needs the mteb package: pip install 'sbert-repro[mteb]'")
    if config.rerank:  # a bi-encoder given as --rerank fails in a second, before any model work
        check_cross_encoder(config.rerank)
    progress.stage("loading the data")
    sts_sets, retrieval_sets = load_eval_sets(config.sts_tasks, config.retrieval_tasks, config.data_dir,
                                              config.retrieval_split)
    fit_on = read_sentences(config.fit_on, "--fit-on") if config.fit_on else None
    check_run_dir(config.output_dir, overwrite=config.overwrite)
    progress.stage("building the model")
    model = for_inference(build_model(config.model, config.pooling, config.device, config.trust_remote_code),
                          config.precision)
    model.max_seq_length = eval_max_seq_length(model, config.eval_max_seq_length)
    check_dims_fit(config.eval_dims, model.get_embedding_dimension(), "--dims")
    check_postprocess_fits(config.postprocess, model.get_embedding_dimension())
    rerank = (Reranking(pair_scorer(load_cross_encoder(
        config.rerank, config.device, config.trust_remote_code), config.eval_batch_size), config.rerank_top_k)
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
