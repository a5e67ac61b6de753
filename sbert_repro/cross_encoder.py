"""The cross-encoder: both sentences of a pair in one input, one score out (the paper's BERT cross-encoder of
Table 2, and its section 1 argument: accurate, but every pair is a forward pass).

Everything here is sentence-transformers' own: `CrossEncoder` (the encoder's weights with a new one-output
classification head), `CrossEncoderTrainer`, `BinaryCrossEntropyLoss` on gold / 5 (the loss the library recommends
for STS cross-encoders; with one output it regresses the sigmoid of the score on the label), and
`CrossEncoderCorrelationEvaluator` for the STSb validation Spearman that picks the best checkpoint. The recipe is
otherwise the paper's (4 epochs, batch 16, lr 2e-5, 10% warm-up), and the Trainer's checkpoints, resume and
non-finite-loss stop are train.py's.

- `finetune --objective cross-encoder`: trained on STSb train, scored on the STS tasks by the Spearman and Pearson
  of its predicted scores against gold. A cross-encoder cannot index a corpus, so no retrieval task is scored. Its
  untrained head has no meaningful baseline: the run's baseline is the raw model as a bi-encoder (the same --model,
  --pooling, cosine), and the record says so.
- `finetune --objective cross-encoder-retrieval`: a re-ranker, trained on --train-task's judgements as labelled
  pairs (each relevant document 1, each of its --hard-negatives mined by the raw model 0; BinaryCrossEntropyLoss with
  pos_weight = negatives per positive, sentence-transformers' reranker recipe), best by CrossEncoderRerankingEvaluator's
  nDCG@10 on the held-out queries' search results. Its baseline is the raw model's exact search of the retrieval
  tasks; its scores are that search with each query's top --rerank-top-k re-ranked.
- `evaluate --rerank MODEL`: retrieve with the bi-encoder through FAISS, then re-score each query's top K with the
  cross-encoder (`rerank_run`); documents below the top K keep their FAISS order beneath the re-ranked ones.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.evaluation import (
    CrossEncoderCorrelationEvaluator,
    CrossEncoderRerankingEvaluator,
)
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

from sbert_repro import metrics
from sbert_repro.config import TrainConfig
from sbert_repro.data import RetrievalData, STSPairs, document_text
from sbert_repro.errors import UsageError
from sbert_repro.model import LONGEST_EVAL_SEQUENCE, WEIGHT_FILES
from sbert_repro.objectives import reranker_no_learning_loss
from sbert_repro.paths import looks_like_folder
from sbert_repro.retrieval_training import RetrievalPairs
from sbert_repro.tasks import TABLE1_STS_TASKS
from sbert_repro.train import (
    NonFiniteLossCheck,
    pairs_to_dataset,
    run_trainer,
    training_arguments,
    training_record,
)

logger = logging.getLogger(__name__)

VALIDATION_NAME = "stsb-validation"
# The Trainer logs the evaluator's Spearman under this key; it also picks the best checkpoint.
BEST_METRIC = f"eval_{VALIDATION_NAME}_spearman"
# A re-ranker's: nDCG@10 of the held-out queries' search results, re-ranked.
RERANK_VALIDATION_NAME = "held-out-queries"
RERANK_BEST_METRIC = f"eval_{RERANK_VALIDATION_NAME}_ndcg@10"
VALIDATION_DEPTH = 30  # the held-out queries' search results re-ranked after each epoch
BASELINE_IS = ("bi-encoder cosine of the raw model (the same --model and --pooling): a cross-encoder's new head is "
               "untrained, so the raw model is scored as the bi-encoder it is")
RERANKED_IS = ("the baseline's exact search (the raw model as a bi-encoder), each query's top --rerank-top-k "
               "re-ranked by the trained cross-encoder; the rest below them in the search's order")
# Scores a list of (first, second) text pairs: a CrossEncoder's predict, or a stand-in in tests.
PairScorer = Callable[[list[tuple[str, str]]], np.ndarray]


class CheckedCrossEncoderTrainer(NonFiniteLossCheck, CrossEncoderTrainer):
    """The cross-encoder Trainer, stopping on a non-finite loss (train.NonFiniteLossCheck)."""


# ----------------------------------------------------------------------------- models

def _fit_length(model: CrossEncoder, length: int | None) -> CrossEncoder:
    """`length` tokens per pair, else the model's own limit; never past its position embeddings (a tokenizer without
    a limit would otherwise let a long pair run past them)."""
    positions = getattr(model.config, "max_position_embeddings", None) or LONGEST_EVAL_SEQUENCE
    own = model.max_seq_length or LONGEST_EVAL_SEQUENCE
    model.max_seq_length = min(length or own, own, positions, LONGEST_EVAL_SEQUENCE)
    return model


def new_cross_encoder(model: str, device: str, trust_remote_code: bool = False,
                      max_length: int | None = None) -> CrossEncoder:
    """The encoder's weights of `model` (a raw encoder, or a sentence-transformers folder whose transformer sits at
    its root, as model.build_model reads it) under a new one-output classification head, randomly initialised from
    the current seed. Built module by module: CrossEncoder(path) would read a bi-encoder folder's modules.json and
    rebuild the bi-encoder."""
    from sentence_transformers.base.modules import Transformer

    remote = {"trust_remote_code": trust_remote_code}
    try:
        transformer = Transformer(model, transformer_task="sequence-classification", model_kwargs=remote,
                                  processor_kwargs=remote, config_kwargs={**remote, "num_labels": 1})
    except (OSError, ValueError) as error:
        raise UsageError(f"--model {model}: cannot load it as a cross-encoder ({str(error).strip()[:200]})") from None
    return _fit_length(CrossEncoder(modules=[transformer], device=device), max_length)


def _model_files(model: str) -> dict[str, dict[str, Any]]:
    """A model's config.json and config_sentence_transformers.json ({} where absent), locally or from the hub."""
    found = {}
    for name in ("config.json", "config_sentence_transformers.json"):
        path = Path(model) / name
        if not path.is_file() and not looks_like_folder(model) and not Path(model).exists():
            try:
                from huggingface_hub import hf_hub_download

                path = Path(hf_hub_download(model, name))
            except Exception:  # noqa: BLE001 - no such file in the repository, or no hub
                pass
        found[name] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return found


def check_cross_encoder(model: str, option: str = "--rerank") -> None:
    """`model` must be a cross-encoder: a classification head (architectures ...ForSequenceClassification), and not
    saved as a SentenceTransformer (a bi-encoder, which embeds single sentences: re-ranking with it would mean a
    random head on its encoder)."""
    if (looks_like_folder(model) or Path(model).exists()) and not Path(model).is_dir():
        raise UsageError(f"{option} {model}: no such folder; give a cross-encoder's folder or hub name")
    files = _model_files(model)
    modules = Path(model) / "modules.json"
    pooled = modules.is_file() and "Pooling" in modules.read_text(encoding="utf-8")
    if files["config_sentence_transformers.json"].get("model_type") == "SentenceTransformer" or pooled:
        raise UsageError(f"{option} {model}: a bi-encoder (SentenceTransformer) folder, not a cross-encoder; give a "
                         "model with a classification head, such as `finetune --objective cross-encoder`'s model/")
    if not files["config.json"]:
        raise UsageError(f"{option} {model}: no config.json; give a cross-encoder's folder or hub name")
    architectures = files["config.json"].get("architectures") or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise UsageError(f"{option} {model}: no classification head ({', '.join(architectures) or 'no architecture'}"
                         "); a raw encoder would re-rank by a random head: give a trained cross-encoder")
    if Path(model).is_dir() and not any((Path(model) / name).is_file() for name in WEIGHT_FILES):
        raise UsageError(f"{option} {model}: the folder has no weights ({', '.join(WEIGHT_FILES[::2])})")


def load_cross_encoder(model: str, device: str, trust_remote_code: bool = False, option: str = "--rerank"
                       ) -> CrossEncoder:
    """A trained cross-encoder, checked first (check_cross_encoder), at its own length."""
    check_cross_encoder(model, option)
    try:
        loaded = CrossEncoder(model, device=device, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise UsageError(f"{option} {model}: cannot load it ({str(error).strip()[:200]})") from None
    return _fit_length(loaded, None)


def pair_scorer(model: CrossEncoder, batch_size: int) -> PairScorer:
    """The model's predict (after its sigmoid: scores in 0..1) as a PairScorer."""
    def score(pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(model.predict(pairs, batch_size=batch_size, show_progress_bar=False,
                                        convert_to_numpy=True), dtype=np.float32).reshape(-1)
    return score


# ----------------------------------------------------------------------------- STS

def score_sts_tasks(score_pairs: PairScorer, sts_sets: dict[str, STSPairs]
                    ) -> tuple[dict[str, float], dict[str, float]]:
    """As evaluate.evaluate_tasks scores a bi-encoder, keyed alike: "task/spearman" and "task/pearson" (x100) of the
    predicted scores against gold, "sts-avg/spearman" over the seven Table 1 tasks when all were scored, and
    "task/pairs_per_s" (every pair is a forward pass)."""
    scores, speeds = {}, {}
    for name, pairs in sts_sets.items():
        start = time.perf_counter()
        predicted = score_pairs(list(zip(pairs.sentences1, pairs.sentences2, strict=True)))
        speeds[f"{name}/pairs_per_s"] = len(pairs) / max(time.perf_counter() - start, 1e-9)
        scores[f"{name}/spearman"] = 100 * metrics.spearman(predicted, pairs.scores)
        scores[f"{name}/pearson"] = 100 * metrics.pearson(predicted, pairs.scores)
    keys = [f"{name}/spearman" for name in TABLE1_STS_TASKS]
    if all(key in scores for key in keys):
        scores["sts-avg/spearman"] = float(np.mean([scores[key] for key in keys]))
    return scores, speeds


# ----------------------------------------------------------------------------- training

def validation_evaluator(validation: STSPairs, batch_size: int) -> CrossEncoderCorrelationEvaluator:
    """STSb validation: Spearman of the predicted scores against gold / 5 (the same order as against gold)."""
    return CrossEncoderCorrelationEvaluator(
        sentence_pairs=[[first, second] for first, second in zip(validation.sentences1, validation.sentences2,
                                                                 strict=True)],
        scores=pairs_to_dataset(validation)["score"], name=VALIDATION_NAME, batch_size=batch_size, write_csv=False)


def reranker_dataset(pairs: RetrievalPairs) -> Dataset:
    """(query, document, label) rows: each judged pair labelled 1, then each of its mined negatives labelled 0."""
    rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
    for query, document, negatives in zip(pairs.queries, pairs.documents, pairs.negatives, strict=True):
        for text, label in ((document, 1.0), *((negative, 0.0) for negative in negatives)):
            rows["query"].append(query)
            rows["document"].append(text)
            rows["label"].append(label)
    return Dataset.from_dict(rows)


def reranking_evaluator(validation: RetrievalData, candidates: Mapping[str, Sequence[str]], batch_size: int
                        ) -> CrossEncoderRerankingEvaluator:
    """nDCG@10 of each held-out query's search results (`candidates`, the raw model's, in its order) re-ranked. A
    relevant document the search missed stays missed (always_rerank_positives=False): the score a re-ranker adds to
    a real search, not to one handed the answers."""
    def text(doc_id: str) -> str:
        return document_text(validation.corpus[doc_id]["title"], validation.corpus[doc_id]["text"])

    samples = [{"query": validation.queries[qid],
                "positive": [text(doc_id) for doc_id, grade in validation.qrels[qid].items()
                             if grade > 0 and doc_id in validation.corpus],
                "documents": [text(doc_id) for doc_id in ranked]} for qid, ranked in candidates.items()]
    return CrossEncoderRerankingEvaluator(samples, at_k=10, always_rerank_positives=False,
                                          name=RERANK_VALIDATION_NAME, batch_size=batch_size, write_csv=False)


@dataclass(frozen=True)
class CrossEncoderTask:
    """What a cross-encoder trains on, how it is validated, and the metric that picks its best checkpoint."""

    dataset: Dataset
    evaluator: Any
    best_metric: str
    metric: str  # as the record names it: validation_<metric>
    labels: str
    pos_weight: float | None = None


def cross_encoder_task(train: STSPairs | RetrievalPairs, validation: STSPairs | RetrievalData, config: TrainConfig,
                       candidates: Mapping[str, Sequence[str]] | None) -> CrossEncoderTask:
    """STSb pairs regressed on gold / 5 (the paper's cross-encoder), or a re-ranker's labelled pairs, where each
    positive weighs as much as its negatives together (sentence-transformers' reranker recipe:
    pos_weight = negatives per positive)."""
    if isinstance(train, RetrievalPairs):
        assert isinstance(validation, RetrievalData) and candidates is not None
        return CrossEncoderTask(reranker_dataset(train), reranking_evaluator(validation, candidates,
                                                                             config.eval_batch_size),
                                RERANK_BEST_METRIC, "ndcg@10", "1: judged relevant, 0: mined negative",
                                float(config.hard_negatives))
    assert isinstance(validation, STSPairs)
    return CrossEncoderTask(pairs_to_dataset(train), validation_evaluator(validation, config.eval_batch_size),
                            BEST_METRIC, "spearman", "gold / 5")


def train_cross_encoder(model: CrossEncoder, task: CrossEncoderTask, train: STSPairs | RetrievalPairs,
                        config: TrainConfig, checkpoint_dir: Path, device: str, resume: bool = False) -> dict[str, Any]:
    """Train `model` in place with BinaryCrossEntropyLoss on `task`; validation after every epoch (and
    --save-steps), the best checkpoint's weights kept. The record has the bi-encoders' fields (train.training_record)
    and the loss."""
    loss = BinaryCrossEntropyLoss(model, pos_weight=None if task.pos_weight is None
                                  else torch.tensor(task.pos_weight))
    args = training_arguments(config, checkpoint_dir, device, config.epochs, config.objective, task.best_metric,
                              arguments=CrossEncoderTrainingArguments)
    trainer = CheckedCrossEncoderTrainer(model=model, args=args, train_dataset=task.dataset, loss=loss,
                                         evaluator=task.evaluator)
    if config.save_steps:
        from sbert_repro.train import EvaluateAndSaveEachEpoch

        trainer.add_callback(EvaluateAndSaveEachEpoch())
    result, resumed_from = run_trainer(trainer, checkpoint_dir, resume)
    record = training_record(trainer, result, task.best_metric, task.metric, config.objective, train, config.epochs,
                             resumed_from)
    if task.pos_weight is not None:
        warn_if_nothing_learned(record["loss_history"], reranker_no_learning_loss(task.pos_weight,
                                                                                  config.hard_negatives))
    return {**record, "train_rows": len(task.dataset),
            "loss": {"class": type(loss).__name__, "num_labels": 1, "labels": task.labels,
                     "pos_weight": task.pos_weight}}


def warn_if_nothing_learned(loss_history: list[dict[str, Any]], no_learning: float) -> bool:
    """Warn (and say so) when a re-ranker's training loss, over the last third of the logged steps, stayed within 3%
    of what scoring every pair alike gives: its re-ranking then only shuffles the search's top K."""
    losses = [entry["loss"] for entry in loss_history]
    last = losses[-max(1, len(losses) // 3):]
    ended_at = sum(last) / len(last) if last else 0.0
    if ended_at < 0.97 * no_learning:
        return False
    logger.warning("the re-ranker learned nothing: its training loss ended at %.2f, where scoring every pair alike "
                   "gives %.2f, so its re-ranking will not help. Start from a model that reads pairs (a cross-encoder "
                   "trained for ranking), or try more --epochs or a higher --lr", ended_at, no_learning)
    return True


def train_seed(record: dict[str, Any], train: STSPairs | RetrievalPairs, validation: STSPairs | RetrievalData,
               config: TrainConfig, seed_dir: Path, device: str, save_record: Callable[[], None],
               candidates: Mapping[str, Sequence[str]] | None = None) -> CrossEncoder:
    """Step 4 of a seed for a cross-encoder objective: a new cross-encoder (its head drawn from the seed, set by the
    caller) trained on STSb, or on the labelled pairs of a re-ranker (validated on `candidates`, the held-out
    queries' search results), appended to record["training_stages"]; a stage an interrupted run finished is loaded
    back from its best checkpoint instead."""
    finished = {stage["objective"]: stage for stage in record["training_stages"]}
    record["training_stages"] = []
    if config.objective in finished:
        record["training_stages"].append(finished[config.objective])
        return _fit_length(CrossEncoder(finished[config.objective]["best_checkpoint"], device=device,
                                        trust_remote_code=config.trust_remote_code), config.max_seq_length)
    model = new_cross_encoder(config.model, device, config.trust_remote_code, config.max_seq_length)
    task = cross_encoder_task(train, validation, config, candidates)
    record["training_stages"].append(train_cross_encoder(model, task, train, config,
                                                         seed_dir / "checkpoints" / config.objective, device,
                                                         resume=config.resume))
    save_record()
    return model


# ----------------------------------------------------------------------------- re-ranking

@dataclass(frozen=True)
class Reranking:
    """`evaluate --rerank`: what re-scores the pairs, and how many of each query's search results it re-scores."""

    score_pairs: PairScorer
    top_k: int


def rerank_run(candidates: Mapping[str, Sequence[str]], data: RetrievalData, top_k: int, depth: int,
               score_pairs: PairScorer) -> tuple[dict[str, dict[str, float]], float]:
    """Each query's first `top_k` candidates (FAISS's order) re-ordered by `score_pairs` on (query, document text),
    the rest below them in FAISS's order, cut to `depth`; and the seconds the re-scoring took.

    The run's scores are ranks (depth - position), so trec_eval reads exactly this order: no cross-encoder score has
    to be comparable with a cosine, and a re-ranked document always stays above the ones not re-ranked."""
    run, seconds = {}, 0.0
    for qid, ranked in candidates.items():
        head, tail = list(ranked[:top_k]), list(ranked[top_k:])
        pairs = [(data.queries[qid], document_text(data.corpus[doc_id]["title"], data.corpus[doc_id]["text"]))
                 for doc_id in head]
        start = time.perf_counter()
        scores = score_pairs(pairs)
        seconds += time.perf_counter() - start
        # A stable sort: equal scores keep FAISS's order.
        order = [head[i] for i in sorted(range(len(head)), key=lambda i: -float(scores[i]))] + tail
        run[qid] = {doc_id: float(depth - position) for position, doc_id in enumerate(order[:depth])}
    return run, seconds


def reranked_scores(candidates: Mapping[str, Sequence[str]], data: RetrievalData, reranking: Reranking
                    ) -> tuple[dict[str, float], float]:
    """A search's results ({qid: doc ids in its order}) re-ranked (rerank_run) and scored by trec_eval ({metric:
    x100}), and the milliseconds per query the re-ranking took: `evaluate --rerank`'s rerank_<metric>, and a
    re-ranker run's own scores (score_reranked)."""
    run, seconds = rerank_run(candidates, data, reranking.top_k, metrics.RETRIEVAL_DEPTH, reranking.score_pairs)
    scores = {metric: 100 * value for metric, value in metrics.retrieval_scores(run, data.qrels).items()}
    return scores, 1000 * seconds / max(len(data.queries), 1)


def score_reranked(candidates: Mapping[str, Mapping[str, Sequence[str]]], retrieval_sets: Mapping[str, RetrievalData],
                   reranking: Reranking) -> tuple[dict[str, float], dict[str, float]]:
    """A re-ranker's scores: each task's search results (`candidates`, by task) re-ranked, keyed as the search's own
    are ("task/<metric>"), so that they line up with the baseline's; and "task/rerank_ms_per_query"."""
    scores, speeds = {}, {}
    for name, data in retrieval_sets.items():
        task_scores, speeds[f"{name}/rerank_ms_per_query"] = reranked_scores(candidates[name], data, reranking)
        scores.update({f"{name}/{metric}": value for metric, value in task_scores.items()})
    return scores, speeds
