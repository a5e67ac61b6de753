"""Evaluation: encode with the model, score STS pairs by cosine, retrieve through a FAISS index.

Scores come back keyed "task/metric" (x100, unrounded) and throughput keyed "task/<what>_per_s" (and an
approximate index's cost "task/approx_<what>"), so a run record holds baseline and fine-tuned results in
the same shape and the report can line them up.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from sbert_repro import metrics
from sbert_repro.config import EvaluateConfig
from sbert_repro.data import RetrievalData, STSPairs, document_text
from sbert_repro.metrics import RETRIEVAL_DEPTH
from sbert_repro.search.faiss_index import EXACT, RECALL_DEPTH, Knobs, build_and_compare, exact_search
from sbert_repro.tasks import RETRIEVAL_TASKS, STS_TASKS, TABLE1_STS_TASKS

logger = logging.getLogger(__name__)


def encode(model: SentenceTransformer, sentences: list[str], batch_size: int,
           description: str = "encode") -> tuple[np.ndarray, float]:
    """L2-normalised float32 embeddings of `sentences`, and sentences encoded per second."""
    start = time.perf_counter()
    # sentence-transformers sorts by length before batching, so padding stays small.
    embeddings = model.encode(sentences, batch_size=batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=True)
    seconds = time.perf_counter() - start
    logger.info("%s: %d sentences in %.1fs", description, len(sentences), seconds)
    return np.ascontiguousarray(embeddings, dtype=np.float32), len(sentences) / max(seconds, 1e-9)


def score_sts(model: SentenceTransformer, pairs: STSPairs, batch_size: int, name: str = "sts"
              ) -> tuple[dict[str, float], float]:
    """Spearman and Pearson x100 of cosine(u, v) against gold, and encode sentences/s."""
    # Each distinct sentence is encoded once: STS sets repeat sentences across pairs.
    unique = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    embeddings, per_second = encode(model, unique, batch_size, description=name)
    return sts_scores(embeddings, unique, pairs), per_second


def sts_scores(embeddings: np.ndarray, sentences: list[str], pairs: STSPairs) -> dict[str, float]:
    """Spearman and Pearson x100 of cosine(u, v) against gold, for `embeddings` of `sentences` (in that order),
    which hold every sentence of `pairs`."""
    row = {sentence: i for i, sentence in enumerate(sentences)}
    u = embeddings[[row[s] for s in pairs.sentences1]]
    v = embeddings[[row[s] for s in pairs.sentences2]]
    cosines = metrics.cosine_similarities(u, v)
    return {"spearman": 100 * metrics.spearman(cosines, pairs.scores),
            "pearson": 100 * metrics.pearson(cosines, pairs.scores)}


def score_retrieval(model: SentenceTransformer, data: RetrievalData, batch_size: int, name: str = "retrieval",
                    compare: EvaluateConfig | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """nDCG@10, MRR@10, Recall@1/10/100, MAP@100 (x100) through an exact FAISS index, and throughput.

    With `compare` naming an approximate index (--index), the same metrics through that index too
    ("approx_<metric>"), its recall@10 against exact search, its build time, size and queries/s.
    """
    documents = [document_text(doc["title"], doc["text"]) for doc in data.corpus.values()]
    doc_embeddings, encode_per_s = encode(model, documents, batch_size, description=f"{name} corpus")
    query_embeddings, _ = encode(model, list(data.queries.values()), batch_size, description=f"{name} queries")
    scores, speed = search_and_score(doc_embeddings, query_embeddings, data, compare)
    return scores, {"corpus_encode_per_s": encode_per_s, **speed}


def search_and_score(doc_embeddings: np.ndarray, query_embeddings: np.ndarray, data: RetrievalData,
                     compare: EvaluateConfig | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """score_retrieval's search and metrics, for embeddings of data.corpus and data.queries (in their order)."""
    doc_ids, query_ids = list(data.corpus), list(data.queries)
    # One deeper than the metrics look: a query's own document (same id) is dropped before the cut.
    depth = RETRIEVAL_DEPTH + 1
    similarities, rows, search_per_s = exact_search(doc_embeddings, query_embeddings, depth)
    scores = _retrieval_scores(similarities, rows, doc_ids, query_ids, data)
    speed = {"search_queries_per_s": search_per_s}
    if compare is not None and compare.index != EXACT:
        approximate = build_and_compare(compare.index, doc_embeddings, query_embeddings, rows, search_per_s,
                                        compare.index_train_size, compare.seed,
                                        [Knobs(compare.nprobe, compare.ef_search)])
        [comparison] = approximate.comparisons
        approximate_scores = _retrieval_scores(comparison.scores, comparison.rows, doc_ids, query_ids, data)
        scores.update({f"approx_{metric}": value for metric, value in approximate_scores.items()})
        scores[f"approx_recall@{RECALL_DEPTH}_vs_exact"] = 100 * comparison.measured[f"recall@{RECALL_DEPTH}_vs_exact"]
        speed.update({"approx_search_queries_per_s": comparison.measured["queries_per_s"],
                      "approx_build_s": approximate.build_s, "approx_bytes_per_vector": approximate.bytes_per_vector})
    return scores, speed


def retrieval_run(similarities: np.ndarray, rows: np.ndarray, doc_ids: list[str], query_ids: list[str]
                  ) -> dict[str, dict[str, float]]:
    """FAISS's answer as a trec_eval run {qid: {doc_id: score}}: each query's top RETRIEVAL_DEPTH once a document
    whose id is the query's own is dropped (BEIR's evaluation drops it by default: ArguAna's and Quora's queries
    are documents of their corpus, and would find themselves)."""
    run: dict[str, dict[str, float]] = {}
    for qid, scored, hits in zip(query_ids, similarities, rows, strict=True):
        ranked = [(doc_ids[row], float(score)) for score, row in zip(scored, hits, strict=True)
                  if row >= 0 and doc_ids[row] != qid]
        run[qid] = dict(ranked[:RETRIEVAL_DEPTH])
    return run


def _retrieval_scores(similarities: np.ndarray, rows: np.ndarray, doc_ids: list[str], query_ids: list[str],
                      data: RetrievalData) -> dict[str, float]:
    """The retrieval metrics (x100) of FAISS's answer, scored by trec_eval (pytrec_eval)."""
    run = retrieval_run(similarities, rows, doc_ids, query_ids)
    return {metric: 100 * value for metric, value in metrics.retrieval_scores(run, data.qrels).items()}


def evaluate_tasks(model: SentenceTransformer, sts_sets: dict[str, STSPairs],
                   retrieval_sets: dict[str, RetrievalData], batch_size: int, compare: EvaluateConfig | None = None
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """Score every loaded task: ({"task/metric": value x100}, {"task/<speed>": per second}).

    STS sets are the tasks' test splits. "sts-avg/spearman" is the mean over the paper's seven Table 1
    tasks, given only when all seven were scored (a missing task is never counted as 0).
    """
    scores: dict[str, float] = {}
    speeds: dict[str, float] = {}
    for name, pairs in sts_sets.items():
        task_scores, per_second = score_sts(model, pairs, batch_size, name)
        scores.update({f"{name}/{metric}": value for metric, value in task_scores.items()})
        speeds[f"{name}/encode_per_s"] = per_second
    if all(f"{name}/spearman" in scores for name in TABLE1_STS_TASKS):
        scores["sts-avg/spearman"] = float(np.mean([scores[f"{name}/spearman"] for name in TABLE1_STS_TASKS]))
    for name, data in retrieval_sets.items():
        task_scores, task_speeds = score_retrieval(model, data, batch_size, name, compare)
        scores.update({f"{name}/{metric}": value for metric, value in task_scores.items()})
        speeds.update({f"{name}/{what}": value for what, value in task_speeds.items()})
    return scores, speeds


def score_with_mteb(model: SentenceTransformer, task_names: tuple[str, ...], output_folder: Path
                    ) -> dict[str, float]:
    """Score through mteb's own API ({"task/mteb_main_score": x100}); its result files go to output_folder.

    mteb downloads its datasets from the Hugging Face hub at its pinned revisions, so this needs the hub.
    """
    import mteb
    from mteb.cache import ResultCache

    declared = {**{name: task.mteb_name for name, task in STS_TASKS.items()},
                **{name: task.mteb_name for name, task in RETRIEVAL_TASKS.items()}}
    ours = {declared[name]: name for name in task_names if declared.get(name)}  # stsb-retrieval is ours alone
    tasks = mteb.get_tasks(tasks=list(ours))
    result = mteb.evaluate(model, tasks, cache=ResultCache(output_folder), overwrite_strategy="always")
    return {f"{ours[task_result.task_name]}/mteb_main_score": 100 * task_result.get_score()
            for task_result in result.task_results}
