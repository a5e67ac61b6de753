"""Training for search: (query, relevant document) pairs from a task's judgements, hard negatives mined through
FAISS with the raw model, and the ranking loss with in-batch negatives.

The recipe is the one sentence-transformers documents for retrieval fine-tuning: MultipleNegativesRankingLoss,
where every other document of the batch is a negative for a query (no duplicate text inside a batch, so that no
query meets its own document as a negative), plus N hard negatives per pair, mined by `mine_hard_negatives` with
`use_faiss=True`. A candidate is skipped as a likely false negative when it is judged relevant to the query, or
when it scores within `--negative-margin` (relative) of the query's least similar relevant document: NV-Retriever's
"TopK-PercPos" rule (Moreira et al. 2024), 0.05 by default, i.e. a negative scores at most 95% of the positive.
The model is validated after each epoch by nDCG@10 on a held-out share of the train queries (SciFact has no
dev split).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.util import mine_hard_negatives
from torch import nn

from sbert_repro.config import TrainConfig
from sbert_repro.data import RetrievalData, document_text, load_retrieval
from sbert_repro.errors import UsageError
from sbert_repro.tasks import retrieval_task

logger = logging.getLogger(__name__)

VALIDATION_METRIC = "ndcg@10"  # the held-out queries' score that picks the best checkpoint


@dataclass(frozen=True)
class RetrievalPairs:
    """(query, relevant document) training pairs, each with the hard negatives mined for it (none until mined)."""

    queries: list[str]
    documents: list[str]
    source: str
    negatives: list[list[str]] = field(default_factory=list)  # per pair; empty: in-batch negatives only

    def __len__(self) -> int:
        return len(self.queries)

    def head(self, n: int) -> RetrievalPairs:
        """The first n pairs (for --max-train-samples)."""
        return RetrievalPairs(self.queries[:n], self.documents[:n], f"{self.source} (first {n})",
                              self.negatives[:n])


@dataclass(frozen=True)
class RetrievalTraining:
    """What `--objective retrieval` reads: the training pairs, the held-out validation task, the task's corpus."""

    pairs: RetrievalPairs
    validation: RetrievalData
    corpus: list[str]  # every document's text, where hard negatives are mined
    split: dict[str, Any]  # how the train queries were split, for the record


def load_retrieval_training(config: TrainConfig, evaluated: dict[str, RetrievalData]) -> RetrievalTraining:
    """The --train-task's judgements as training pairs, a held-out share of its queries for validation; refused
    when its training queries are among the queries a run scores (the test queries of the same task)."""
    task = retrieval_task(config.train_task)
    if task.derived_from is not None:
        raise UsageError(f"--train-task {config.train_task}: built from {task.derived_from} test pairs, it has no "
                         "training judgements; give a BEIR task with a train split, such as scifact")
    data = load_retrieval(config.train_task, config.data_dir, config.train_split, option="--train-split")
    data = check_no_overlap(data, task.name, config.train_split, evaluated)
    train_ids, validation_ids = split_queries(list(data.queries), config.validation_share, config.validation_seed)
    pairs = training_pairs(data, train_ids)
    if not len(pairs):
        raise UsageError(f"--train-task {config.train_task}: no judgement of a training query names a document of "
                         "the corpus with a grade above 0, so there is nothing to train on; check its qrels")
    validation = validation_task(data, validation_ids, config.validation_documents, config.validation_seed)
    split = {"train_queries": len(train_ids), "validation_queries": len(validation_ids),
             "left_out_repeating_a_scored_query": data.checks.get("train_queries_repeating_a_scored_query", 0),
             "validation_documents": len(validation.corpus), "train_pairs": len(pairs)}
    logger.info("%s: %d training pairs from %d queries; %d queries held out for validation over %d documents",
                task.name, len(pairs), len(train_ids), len(validation_ids), len(validation.corpus))
    corpus = [document_text(doc["title"], doc["text"]) for doc in data.corpus.values()]
    return RetrievalTraining(pairs, validation, corpus, split)


def check_no_overlap(train: RetrievalData, name: str, split: str, evaluated: dict[str, RetrievalData]
                     ) -> RetrievalData:
    """`train` without the queries a run also scores in the evaluated task of that name. The same query id in
    both splits is a broken split, refused; the same text under another id is left out of training with one
    warning (SciFact ships two such claims: train 871 and 1291 are test 870 and 1292, word for word)."""
    scored = evaluated.get(name)
    if scored is None:
        return train
    shared_ids = [qid for qid in train.queries if qid in scored.queries]
    if shared_ids:
        raise UsageError(f"--train-task {name}: {len(shared_ids)} of its {split!r} query ids (e.g. {shared_ids[0]!r}) "
                         f"are also scored in {name} ({scored.source}); train on another split (--train-split) or "
                         "score another one (--retrieval-split)")
    texts = {text.strip() for text in scored.queries.values()}
    repeated = [qid for qid, text in train.queries.items() if text.strip() in texts]
    if not repeated:
        return train
    logger.warning("--train-task %s: %d %s quer(ies) repeat a scored query's text word for word (e.g. %r); left out "
                   "of training", name, len(repeated), split, repeated[0])
    kept = {qid: text for qid, text in train.queries.items() if qid not in repeated}
    return replace(train, queries=kept, qrels={qid: train.qrels[qid] for qid in kept},
                   checks={**train.checks, "train_queries_repeating_a_scored_query": len(repeated)})


def split_queries(query_ids: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids): a seeded share of the queries, at least one, held out; order kept."""
    if len(query_ids) < 2:
        raise UsageError(f"--train-task: {len(query_ids)} judged query; training and validation need at least two")
    held_out = set(random.Random(seed).sample(query_ids, max(1, round(share * len(query_ids)))))
    return [qid for qid in query_ids if qid not in held_out], [qid for qid in query_ids if qid in held_out]


def training_pairs(data: RetrievalData, query_ids: list[str]) -> RetrievalPairs:
    """One pair per (query, document judged above 0): a query with three relevant documents gives three pairs.
    Judgements of documents missing from the corpus are skipped (their text is unknown)."""
    queries, documents = [], []
    for qid in query_ids:
        for doc_id, grade in data.qrels[qid].items():
            if grade > 0 and doc_id in data.corpus:
                queries.append(data.queries[qid])
                documents.append(document_text(data.corpus[doc_id]["title"], data.corpus[doc_id]["text"]))
    return RetrievalPairs(queries, documents, source=data.source)


def validation_task(data: RetrievalData, query_ids: list[str], size: int, seed: int) -> RetrievalData:
    """The held-out queries, searched over every document judged in the split plus a seeded sample of the rest,
    `size` documents in all: a full-corpus search after each epoch would cost a CPU run as much as its training."""
    judged = {doc_id for qid in data.qrels for doc_id in data.qrels[qid] if doc_id in data.corpus}
    others = [doc_id for doc_id in data.corpus if doc_id not in judged]
    sample = set(random.Random(seed).sample(others, max(0, min(len(others), size - len(judged)))))
    corpus = {doc_id: doc for doc_id, doc in data.corpus.items() if doc_id in judged or doc_id in sample}
    # Only queries with a relevant document to find: nDCG of the others is 0 whatever the model does.
    scorable = [qid for qid in query_ids if any(grade > 0 and doc_id in corpus
                                                for doc_id, grade in data.qrels[qid].items())]
    if not scorable:
        raise UsageError(f"{data.source}: none of the {len(query_ids)} held-out validation queries has a relevant "
                         "document in the corpus; hold out more (--validation-share) or check the qrels")
    return RetrievalData(corpus, {qid: data.queries[qid] for qid in scorable},
                         {qid: data.qrels[qid] for qid in scorable}, source=f"{data.source}, held-out queries")


def mine_negatives(pairs: RetrievalPairs, corpus: list[str], model: SentenceTransformer, config: TrainConfig,
                   cache_folder: Path | None) -> tuple[RetrievalPairs, dict[str, Any]]:
    """`config.hard_negatives` negatives per pair, mined with `model` (the raw one) over `corpus` through a FAISS
    index; returns the pairs with their negatives, and what was mined for the record. A pair for which too few
    candidates pass the rules gets random documents of the corpus (none relevant to its query) in the places left:
    every row then has the same columns, and no leftover batch of a few rows trains on nothing."""
    dataset = Dataset.from_dict({"query": pairs.queries, "document": pairs.documents})
    mined = mine_hard_negatives(
        dataset, model, corpus=corpus, num_negatives=config.hard_negatives,
        relative_margin=config.negative_margin, sampling_strategy="top", use_faiss=True, output_format="n-tuple",
        batch_size=config.eval_batch_size, cache_folder=str(cache_folder) if cache_folder else None)
    columns = [f"negative_{n}" for n in range(1, config.hard_negatives + 1)]
    found = {(row["query"], row["document"]): [row[column] for column in columns] for row in mined}
    relevant: dict[str, set[str]] = {}
    for query, document in zip(pairs.queries, pairs.documents, strict=True):
        relevant.setdefault(query, set()).add(document)
    draw = random.Random(config.validation_seed)
    negatives, filled = [], 0
    for query, document in zip(pairs.queries, pairs.documents, strict=True):
        hard = found.get((query, document), [])
        if not hard:
            hard, filled = _random_negatives(corpus, relevant[query], config.hard_negatives, draw), filled + 1
        negatives.append(hard)
    if filled:
        logger.warning("hard negatives: %d of %d pairs had fewer than %d candidates outside the margin; they got "
                       "random documents of the corpus instead", filled, len(pairs), config.hard_negatives)
    stats = {"per_pair": config.hard_negatives, "relative_margin": config.negative_margin, "sampling": "top",
             "excluded": "documents judged relevant to the query, and candidates within the margin",
             "mined_with": "the raw model (baseline)", "index": "faiss exact inner product (use_faiss=True)",
             "pairs_mined": len(pairs) - filled, "pairs_given_random_negatives": filled}
    return RetrievalPairs(pairs.queries, pairs.documents, pairs.source, negatives), stats


def _random_negatives(corpus: list[str], relevant: set[str], count: int, draw: random.Random) -> list[str]:
    """`count` distinct documents of `corpus` drawn at random, none of them in `relevant`."""
    chosen: list[str] = []
    for _ in range(100 * count):
        if len(chosen) == count:
            break
        document = corpus[draw.randrange(len(corpus))]
        if document not in relevant and document not in chosen:
            chosen.append(document)
    if len(chosen) < count:
        raise UsageError(f"--hard-negatives {count}: the corpus has too few documents that are not relevant to a "
                         "training query; give fewer")
    return chosen


def retrieval_objective(model: SentenceTransformer, pairs: RetrievalPairs, config: TrainConfig
                        ) -> tuple[Dataset, nn.Module]:
    """(query, document[, negative_1 ... negative_N]) rows and the ranking loss; with --mini-batch-size its cached
    form (GradCache: the same gradients, memory for a mini-batch only)."""
    loss = (MultipleNegativesRankingLoss(model) if config.mini_batch_size is None
            else CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size))
    columns = {"query": pairs.queries, "document": pairs.documents}
    if pairs.negatives:
        for n in range(len(pairs.negatives[0])):
            columns[f"negative_{n + 1}"] = [negatives[n] for negatives in pairs.negatives]
    return Dataset.from_dict(columns), loss


def retrieval_evaluator(validation: RetrievalData, batch_size: int, name: str) -> InformationRetrievalEvaluator:
    """nDCG@10 (and the library's other metrics) of the held-out queries, by cosine."""
    return InformationRetrievalEvaluator(
        queries=validation.queries,
        corpus={doc_id: document_text(doc["title"], doc["text"]) for doc_id, doc in validation.corpus.items()},
        relevant_docs={qid: {doc_id for doc_id, grade in judged.items() if grade > 0}
                       for qid, judged in validation.qrels.items()},
        name=name, batch_size=batch_size, write_csv=False, main_score_function="cosine")
