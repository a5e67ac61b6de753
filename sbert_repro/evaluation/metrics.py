"""Metrics as pure functions: no I/O, no rounding, fractions in [0, 1] (callers scale to x100).

STS: Spearman and Pearson correlation of a model's cosine similarities with gold scores (scipy).
Retrieval: trec_eval's own implementation, through pytrec_eval, as BEIR and mteb score: nDCG@10, MRR@10,
Recall@1/10/100 and MAP@100 of a run {qid: {doc_id: score}} against graded judgements {qid: {doc_id: grade}};
a grade > 0 is relevant. trec_eval ranks a run by score, ties by document id in reverse order. A judged document
missing from the corpus still counts in nDCG's ideal ranking and in recall's denominator, as trec_eval counts it.
"""

from __future__ import annotations

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


# Our metric name: (trec_eval's measure, the key pytrec_eval reports it under).
RETRIEVAL_METRICS = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10"),
    "mrr@10": ("recip_rank", "recip_rank"),  # on the run's top 10: trec_eval's reciprocal rank has no cut
    "recall@1": ("recall.1", "recall_1"),
    "recall@10": ("recall.10", "recall_10"),
    "recall@100": ("recall.100", "recall_100"),
    "map@100": ("map_cut.100", "map_cut_100"),
}
# Results a run needs per query: the deepest cut any metric looks at.
RETRIEVAL_DEPTH = 100
MRR_DEPTH = 10


def trec_order(scored: Mapping[str, float]) -> list[str]:
    """Document ids in trec_eval's ranking: score descending (compared as float32, as pytrec_eval compares),
    ties by document id descending."""
    return sorted(scored, key=lambda doc_id: (np.float32(scored[doc_id]), doc_id), reverse=True)


def retrieval_scores(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]]
                     ) -> dict[str, float]:
    """Every RETRIEVAL_METRICS entry averaged over the queries of `qrels`, as BEIR and mteb average them.

    A query whose judgements are all 0 (or negative) scores 0, as in BEIR and mteb; a judged query missing from
    `run` scores 0 too (it retrieved nothing: trec_eval -c) rather than being left out.
    """
    return mean_scores(per_query_scores(run, qrels))


def mean_scores(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """per_query_scores averaged over its queries: every judged query counts, as retrieval_scores counts it."""
    return {name: sum(scores[name] for scores in per_query.values()) / len(per_query) for name in RETRIEVAL_METRICS}


def per_query_scores(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]]
                     ) -> dict[str, dict[str, float]]:
    """Every RETRIEVAL_METRICS entry of each query of `qrels` (in its order), as retrieval_scores averages them: the
    scores a paired significance test compares."""
    import pytrec_eval  # its C extension is only needed here

    if not any(grade > 0 for judgements in qrels.values() for grade in judgements.values()):
        raise ValueError("qrels hold no relevant document; nothing to score")
    qrels = {qid: dict(judgements) for qid, judgements in qrels.items()}
    full_run = {qid: dict(run.get(qid, {})) for qid in qrels}
    top = {qid: {doc_id: scored[doc_id] for doc_id in trec_order(scored)[:MRR_DEPTH]}
           for qid, scored in full_run.items()}
    deep = {measure for name, (measure, _) in RETRIEVAL_METRICS.items() if name != "mrr@10"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, deep).evaluate(full_run)
    for qid, values in pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top).items():
        per_query.setdefault(qid, {}).update(values)
    return {qid: {name: per_query.get(qid, {}).get(key, 0.0) for name, (_, key) in RETRIEVAL_METRICS.items()}
            for qid in qrels}
