"""Training for search, its data: (query, relevant document) pairs from a task's train judgements, and a held-out
share of the train queries to validate on after each epoch (SciFact has no dev split). The hard negatives mined
for the pairs are train/mining.py's; the ranking loss is train/losses.py's.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sbert_repro.data.corpus import document_text
from sbert_repro.data.loaders import RetrievalData, load_retrieval
from sbert_repro.data.tasks import retrieval_task
from sbert_repro.errors import UsageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievalPairs:
    """(query, relevant document) training pairs, each with the hard negatives mined for it (none until mined)."""

    queries: list[str]
    documents: list[str]
    source: str
    negatives: list[list[str]] = field(default_factory=list)  # per pair; empty: in-batch negatives only
    document_ids: list[str] = field(default_factory=list)  # each document's corpus id, where mining excludes it

    def __len__(self) -> int:
        return len(self.queries)



@dataclass(frozen=True)
class RetrievalTraining:
    """What `--objective retrieval` reads: the training pairs, the held-out validation task, the task's corpus."""

    pairs: RetrievalPairs
    validation: RetrievalData
    corpus: Mapping[str, dict[str, str]]  # the task's corpus, where hard negatives are mined (a local file's is
    # read by offsets)
    split: dict[str, Any]  # how the train queries were split, for the record


def load_retrieval_training(train_task: str, data_dir: Path | None, train_split: str,
                            evaluated: dict[str, RetrievalData], *, validation_share: float, validation_seed: int,
                            validation_documents: int) -> RetrievalTraining:
    """The --train-task's judgements as training pairs, `validation_share` of its queries held out for validation
    (drawn with `validation_seed`, searched over `validation_documents` documents); refused when its training
    queries are among the queries a run scores (the test queries of the same task)."""
    task = retrieval_task(train_task)
    if task.derived_from is not None:
        raise UsageError(f"--train-task {train_task}: built from {task.derived_from} test pairs, it has no "
                         "training judgements; give a BEIR task with a train split, such as scifact")
    data = load_retrieval(train_task, data_dir, train_split, option="--train-split")
    data = check_no_overlap(data, task.name, train_split, evaluated)
    train_ids, validation_ids = split_queries(list(data.queries), validation_share, validation_seed)
    pairs = training_pairs(data, train_ids)
    if not len(pairs):
        raise UsageError(f"--train-task {train_task}: no judgement of a training query names a document of "
                         "the corpus with a grade above 0, so there is nothing to train on; check its qrels")
    validation = validation_task(data, validation_ids, validation_documents, validation_seed)
    split = {"train_queries": len(train_ids), "validation_queries": len(validation_ids),
             "left_out_repeating_a_scored_query": data.checks.get("train_queries_repeating_a_scored_query", 0),
             "validation_documents": len(validation.corpus), "train_pairs": len(pairs)}
    logger.info("%s: %d training pairs from %d queries; %d queries held out for validation over %d documents",
                task.name, len(pairs), len(train_ids), len(validation_ids), len(validation.corpus))
    return RetrievalTraining(pairs, validation, data.corpus, split)


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
    queries, documents, document_ids = [], [], []
    for qid in query_ids:
        for doc_id, grade in data.qrels[qid].items():
            if grade > 0 and doc_id in data.corpus:
                queries.append(data.queries[qid])
                documents.append(document_text(data.corpus[doc_id]["title"], data.corpus[doc_id]["text"]))
                document_ids.append(doc_id)
    return RetrievalPairs(queries, documents, source=data.source, document_ids=document_ids)


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


