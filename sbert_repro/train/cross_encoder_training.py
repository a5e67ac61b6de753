"""Training the cross-encoder (both sentences of a pair in one input, one score out: the paper's BERT cross-encoder
of Table 2) with sentence-transformers' `CrossEncoderTrainer` and `BinaryCrossEntropyLoss` (the loss the library
recommends for STS cross-encoders; with one output it regresses the sigmoid of the score on the label). The recipe is
otherwise the paper's (4 epochs, batch 16, lr 2e-5, 10% warm-up); the loss is the registry's, built by
train/losses.py, and the Trainer's arguments, checkpoints, resume and non-finite-loss stop are train/trainer.py's.

- `finetune --objective cross-encoder`: STSb train pairs on gold / 5, the best checkpoint by STSb validation
  Spearman.
- `finetune --objective cross-encoder-retrieval`: a re-ranker, trained on --train-task's judgements as labelled
  pairs (each relevant document 1, each of its --hard-negatives mined by the raw model 0; BinaryCrossEntropyLoss with
  pos_weight = negatives per positive, sentence-transformers' reranker recipe), the best checkpoint by nDCG@10 of
  the held-out queries' search results re-ranked; a warning when its loss shows it learned nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

from sbert_repro.config.objectives import ended_at_no_learning, get_objective, reranker_no_learning_loss
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import RetrievalData, STSPairs
from sbert_repro.data.retrieval_pairs import RetrievalPairs
from sbert_repro.model.cross_encoder import new_cross_encoder
from sbert_repro.train.losses import build_loss, loss_entry, pairs_to_dataset
from sbert_repro.train.reporting import follow_conventions
from sbert_repro.train.trainer import (
    CheckpointWriteCheck,
    EvaluateAndSaveEachEpoch,
    NonFiniteLossCheck,
    OneDevice,
    run_trainer,
    training_arguments,
    training_record,
)
from sbert_repro.train.validation import (
    CROSS_ENCODER_BEST_METRIC,
    RERANKER_BEST_METRIC,
    cross_encoder_validation,
    reranking_evaluator,
)

logger = logging.getLogger(__name__)


class CheckedCrossEncoderTrainer(OneDevice, NonFiniteLossCheck, CheckpointWriteCheck, CrossEncoderTrainer):
    """The cross-encoder Trainer, stopping on a non-finite loss or a checkpoint it cannot write (trainer.py's)."""


def reranker_dataset(pairs: RetrievalPairs) -> Dataset:
    """(query, document, label) rows: each judged pair labelled 1, then each of its mined negatives labelled 0."""
    rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
    for query, document, negatives in zip(pairs.queries, pairs.documents, pairs.negatives, strict=True):
        for text, label in ((document, 1.0), *((negative, 0.0) for negative in negatives)):
            rows["query"].append(query)
            rows["document"].append(text)
            rows["label"].append(label)
    return Dataset.from_dict(rows)


@dataclass(frozen=True)
class CrossEncoderTask:
    """What a cross-encoder trains on, how it is validated, and the metric that picks its best checkpoint."""

    dataset: Dataset
    evaluator: Any
    best_metric: str
    metric: str  # as the record names it: validation_<metric>
    labels: str


def cross_encoder_task(train: STSPairs | RetrievalPairs, validation: STSPairs | RetrievalData, config: TrainConfig,
                       candidates: Mapping[str, Sequence[str]] | None) -> CrossEncoderTask:
    """STSb pairs regressed on gold / 5 (the paper's cross-encoder), or a re-ranker's labelled pairs (each positive
    weighed by its loss as much as its negatives together: losses.binary_cross_entropy)."""
    if get_objective(config.objective).validation == "held-out-queries":
        assert isinstance(train, RetrievalPairs) and isinstance(validation, RetrievalData) and candidates is not None
        return CrossEncoderTask(reranker_dataset(train), reranking_evaluator(validation, candidates,
                                                                             config.eval_batch_size),
                                RERANKER_BEST_METRIC, "ndcg@10", "1: judged relevant, 0: mined negative")
    assert isinstance(validation, STSPairs)
    return CrossEncoderTask(pairs_to_dataset(train), cross_encoder_validation(validation, config.eval_batch_size),
                            CROSS_ENCODER_BEST_METRIC, "spearman", "gold / 5")


def train_cross_encoder(model: CrossEncoder, task: CrossEncoderTask, train: STSPairs | RetrievalPairs,
                        config: TrainConfig, checkpoint_dir: Path) -> dict[str, Any]:
    """Train `model` in place with the objective's loss (BinaryCrossEntropyLoss) on `task`; validation after every
    epoch (and --save-steps), the best checkpoint's weights kept. The record has the bi-encoders' fields
    (trainer.training_record) and the loss."""
    loss = build_loss(config.objective, model, config)
    args = training_arguments(config, checkpoint_dir, config.epochs, config.objective, task.best_metric,
                              arguments=CrossEncoderTrainingArguments)
    trainer = CheckedCrossEncoderTrainer(model=model, args=args, train_dataset=task.dataset, loss=loss,
                                         evaluator=task.evaluator)
    follow_conventions(trainer, checkpoint_dir)
    if config.save_steps:
        trainer.add_callback(EvaluateAndSaveEachEpoch())
    result, resumed_from = run_trainer(trainer, checkpoint_dir, config.resume)
    record = training_record(trainer, result, task.best_metric, task.metric, config.objective, train, config.epochs,
                             resumed_from)
    entry = {**loss_entry(loss), "num_labels": 1, "labels": task.labels}
    if entry.get("pos_weight") is not None:  # a re-ranker's
        warn_if_nothing_learned(record["loss_history"], reranker_no_learning_loss(entry["pos_weight"],
                                                                                  config.hard_negatives))
    return {**record, "train_rows": len(task.dataset), "loss": entry}


def warn_if_nothing_learned(loss_history: list[dict[str, Any]], no_learning: float) -> bool:
    """Warn (and say so) when a re-ranker's training loss, over the last third of the logged steps, stayed within 3%
    of what scoring every pair alike gives: its re-ranking then only shuffles the search's top K."""
    nothing, ended_at = ended_at_no_learning([entry["loss"] for entry in loss_history], no_learning)
    if not nothing:
        return False
    logger.warning("the re-ranker learned nothing: its training loss ended at %.2f, where scoring every pair alike "
                   "gives %.2f, so its re-ranking will not help. Start from a model that reads pairs (a cross-encoder "
                   "trained for ranking), or try more --epochs or a higher --lr", ended_at, no_learning)
    return True


def train_new_cross_encoder(train: STSPairs | RetrievalPairs, validation: STSPairs | RetrievalData,
                            config: TrainConfig, checkpoint_dir: Path,
                            candidates: Mapping[str, Sequence[str]] | None = None
                            ) -> tuple[CrossEncoder, dict[str, Any]]:
    """A new cross-encoder (its head drawn from the current seed) trained on STSb, or on the labelled pairs of a
    re-ranker (validated on `candidates`, the held-out queries' search results); returns it and what its training
    did."""
    model = new_cross_encoder(config.model, config.device, config.trust_remote_code, config.max_seq_length)
    task = cross_encoder_task(train, validation, config, candidates)
    return model, train_cross_encoder(model, task, train, config, checkpoint_dir)
