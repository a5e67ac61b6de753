"""Metrics as pure functions: no I/O, no rounding, fractions in [0, 1] (callers scale to x100).

STS: Spearman and Pearson correlation of a model's cosine similarities with gold scores.
Retrieval: trec_eval's definitions (those pytrec_eval, BEIR and mteb report), for one query's ranked list
of document ids and its graded judgements {doc_id: grade}; a grade > 0 is relevant.
- nDCG@k: gain = grade (linear, as trec_eval), discount 1 / log2(rank + 1); the ideal ranking sorts every
  judged grade, not only those retrieved.
- MRR@k: 1 / rank of the first relevant document in the top k, else 0.
- Recall@k: relevant documents in the top k / all relevant documents.
- AP@k (MAP@k averaged): sum of precision at each relevant rank <= k / all relevant documents.
Ties: a ranked list is taken in the order given; the searcher (FAISS) decides the order of equal scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr


def cosine_similarities(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, d) arrays."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    norms = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
    return np.einsum("ij,ij->i", u, v) / np.maximum(norms, 1e-12)


def spearman(predicted: Sequence[float], gold: Sequence[float]) -> float:
    """Spearman rank correlation (ties get average ranks)."""
    return float(spearmanr(predicted, gold).statistic)


def pearson(predicted: Sequence[float], gold: Sequence[float]) -> float:
    return float(pearsonr(predicted, gold).statistic)


def ndcg_at_k(ranked: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    dcg = sum(judgements.get(doc_id, 0) / math.log2(rank + 1)
              for rank, doc_id in enumerate(ranked[:k], start=1) if judgements.get(doc_id, 0) > 0)
    ideal_grades = sorted((grade for grade in judgements.values() if grade > 0), reverse=True)[:k]
    ideal = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal_grades, start=1))
    return dcg / ideal if ideal > 0 else 0.0


def mrr_at_k(ranked: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    for rank, doc_id in enumerate(ranked[:k], start=1):
        if judgements.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranked: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    relevant = {doc_id for doc_id, grade in judgements.items() if grade > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def average_precision_at_k(ranked: Sequence[str], judgements: Mapping[str, int], k: int) -> float:
    relevant = {doc_id for doc_id, grade in judgements.items() if grade > 0}
    hits, precision_sum = 0, 0.0
    for rank, doc_id in enumerate(ranked[:k], start=1):
        if doc_id in relevant:
            hits += 1
            precision_sum += hits / rank
    return precision_sum / len(relevant) if relevant else 0.0


RETRIEVAL_METRICS = {
    "ndcg@10": (ndcg_at_k, 10),
    "mrr@10": (mrr_at_k, 10),
    "recall@1": (recall_at_k, 1),
    "recall@10": (recall_at_k, 10),
    "recall@100": (recall_at_k, 100),
    "map@100": (average_precision_at_k, 100),
}


def retrieval_scores(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Every RETRIEVAL_METRICS entry averaged over the queries of `qrels` that have a relevant document.

    A judged query missing from `run` scores 0 (it retrieved nothing) rather than being left out; queries
    whose judgements hold no relevant document cannot be scored and are left out, as trec_eval does.
    """
    judged = [qid for qid, judgements in qrels.items() if any(grade > 0 for grade in judgements.values())]
    if not judged:
        raise ValueError("qrels hold no relevant document; nothing to score")
    return {name: sum(metric(run.get(qid, ()), qrels[qid], k) for qid in judged) / len(judged)
            for name, (metric, k) in RETRIEVAL_METRICS.items()}
