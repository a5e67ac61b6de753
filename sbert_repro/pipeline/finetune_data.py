"""What a fine-tune reads: every set, loaded and checked before any model work (so bad input fails in seconds),
and what the raw model prepares from them once for every seed: --hard-negatives mined through FAISS, and a
re-ranker's candidates (its search results for the held-out queries and for each scored task)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from sbert_repro.config.objectives import DataKind, get_objective
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import NLIPairs, RetrievalData, STSPairs, correlatable, load_eval_sets, load_nli, load_sts
from sbert_repro.data.retrieval_pairs import RetrievalPairs, RetrievalTraining, load_retrieval_training
from sbert_repro.data.sources import first_rows, read_sentences
from sbert_repro.data.tasks import TRAIN_TASK
from sbert_repro.evaluation.metrics import RETRIEVAL_DEPTH
from sbert_repro.evaluation.scoring import search_candidates
from sbert_repro.model.encoder import resolve_prompts
from sbert_repro.model.precision import for_inference
from sbert_repro.runs.environment import is_main_process
from sbert_repro.runs.records import FINETUNE_KIND, RUN_DIR_OPTIONS, check_run_dir
from sbert_repro.train.losses import training_stages
from sbert_repro.train.mining import mine_negatives
from sbert_repro.train.reporting import check_report_to
from sbert_repro.train.trainer import per_process_batch_size
from sbert_repro.train.validation import VALIDATION_DEPTH

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneData:
    """Every set a fine-tune reads, loaded and checked before any model work."""

    train_sets: dict[str, STSPairs | NLIPairs | RetrievalPairs]  # by training stage (objective)
    validation: STSPairs | RetrievalData  # STSb validation; for retrieval, held-out train queries
    sts_sets: dict[str, STSPairs]
    retrieval_sets: dict[str, RetrievalData]
    retrieval_training: RetrievalTraining | None = None  # --objective retrieval: its corpus and query split
    hard_negatives: dict[str, Any] | None = None  # what was mined, once mined
    # cross-encoder-retrieval: the raw model's search results, once for every seed: the held-out queries' (re-ranked
    # to validate) and each retrieval task's (re-ranked to score), {qid: [doc_id, ...]}
    validation_candidates: dict[str, list[str]] | None = None
    search_candidates: dict[str, dict[str, list[str]]] | None = None  # by task
    fit_on: list[str] | None = None  # --fit-on's sentences, for the baseline's --postprocess
    # sha256 of the raw model (weights and tokenizer; modules) and of each set as loaded: what --resume compares
    fingerprints: dict[str, Any] = field(default_factory=dict)

    def sets(self) -> dict[str, Any]:
        """Every set by the name the record gives it."""
        return {**{f"train ({objective})": data for objective, data in self.train_sets.items()},
                "validation": self.validation, **self.sts_sets, **self.retrieval_sets}

    def sources(self) -> dict[str, str]:
        """Where each set came from, for the record."""
        return {name: data.source for name, data in self.sets().items()}


# Each kind of training data but --train-task's judgements (which bring their own validation queries), by where it
# is read from: STSb train, or --nli-task's split.
PAIR_LOADERS: dict[DataKind, Callable[[TrainConfig], STSPairs | NLIPairs]] = {
    "sts-pairs": lambda config: load_sts(TRAIN_TASK, "train", config.data_dir),
    "nli-pairs": lambda config: load_nli(config.nli_task, config.nli_split, config.data_dir),
    "nli-triplets": lambda config: load_nli(config.nli_task, config.nli_split, config.data_dir)}


def load_finetune_data(config: TrainConfig) -> FinetuneData:
    """Each training stage's pairs, STSb validation, and the tasks scored before and after; the run folder
    checked too, so that nothing is trained for a run that could not be written."""
    check_report_to(config.report_to)
    sts_sets, retrieval_sets = load_eval_sets(config.sts_tasks, config.retrieval_tasks, config.data_dir,
                                              config.retrieval_split)
    retrieval_training = None
    train_sets: dict[str, STSPairs | NLIPairs | RetrievalPairs] = {}
    for stage in training_stages(config):
        kind = get_objective(stage).train_data
        assert kind is not None  # a stage is a single-stage objective, which declares its data
        if kind == "retrieval-judgements":
            retrieval_training = load_retrieval_training(
                config.train_task, config.data_dir, config.train_split, retrieval_sets,
                validation_share=config.validation_share, validation_seed=config.validation_seed,
                validation_documents=config.validation_documents)
            train_sets[stage] = retrieval_training.pairs
        else:
            train_sets[stage] = PAIR_LOADERS[kind](config)
        if config.max_train_samples is not None:
            if config.max_train_samples > len(train_sets[stage]):
                logger.warning("--max-train-samples %d: %s has only %d pairs; training on all of them",
                               config.max_train_samples, train_sets[stage].source, len(train_sets[stage]))
            train_sets[stage] = first_rows(train_sets[stage], config.max_train_samples)
    validation = (retrieval_training.validation if retrieval_training
                  else correlatable(load_sts(TRAIN_TASK, "validation", config.data_dir)))
    per_process_batch_size(config.batch_size)  # under torchrun: does the batch split over the processes?
    if is_main_process():
        check_run_dir(config.output_dir, resume=config.resume, overwrite=config.overwrite, options=RUN_DIR_OPTIONS,
                      kind=FINETUNE_KIND)
    fit_on = read_sentences(config.fit_on, "--fit-on") if config.fit_on else None
    return FinetuneData(train_sets, validation, sts_sets, retrieval_sets, retrieval_training, fit_on=fit_on)


MINING_CACHE = "mining-cache"  # in the run folder: the raw model's corpus vectors, until the run is done


def mine_hard_negatives(config: TrainConfig, data: FinetuneData, model: SentenceTransformer,
                        run_dir: Path | None) -> dict[str, Any]:
    """The training pairs with --hard-negatives mined by the raw model, once for every seed, as the fields of `data`
    they replace. The raw model's corpus vectors are cached in the run folder, so a resumed run mines the same
    negatives without encoding again; a model changed at the same path since (weights, tokenizer, modules) is
    refused there."""
    assert data.retrieval_training is not None
    [(objective, pairs)] = data.train_sets.items()
    identity = {key: data.fingerprints[key] for key in ("model_sha256", "modules_sha256")}
    pairs, mined = mine_negatives(pairs, data.retrieval_training.corpus, for_inference(model, config.precision),
                                  config, run_dir / MINING_CACHE if run_dir is not None else None, identity)
    return {"train_sets": {objective: pairs}, "hard_negatives": mined}


def rerank_candidates(config: TrainConfig, data: FinetuneData, model: SentenceTransformer) -> dict[str, Any]:
    """What a re-ranker (cross-encoder-retrieval) re-scores, searched once with the raw model for every seed, as the
    fields of `data` it fills: the held-out queries' top results, to validate; and each retrieval task's top
    --rerank-top-k, to score."""
    assert config.rerank_top_k is not None
    encoder, batch_size = for_inference(model, config.precision), config.eval_batch_size
    depth, prompts = max(config.rerank_top_k, RETRIEVAL_DEPTH), resolve_prompts(model, config)
    return {"validation_candidates": search_candidates(encoder, data.validation, batch_size, VALIDATION_DEPTH,
                                                       "held-out queries", prompts),
            "search_candidates": {name: search_candidates(encoder, task, batch_size, depth, name, prompts)
                                  for name, task in data.retrieval_sets.items()}}
