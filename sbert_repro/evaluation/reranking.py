"""`evaluate --rerank`: retrieve with the bi-encoder through FAISS, then re-score each query's top K with a
cross-encoder; documents below the top K keep their FAISS order beneath the re-ranked ones."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sbert_repro.data.corpus import document_text
from sbert_repro.data.loaders import RetrievalData
from sbert_repro.evaluation import metrics
from sbert_repro.model.cross_encoder import PairScorer


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
