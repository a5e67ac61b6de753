"""BM25, the lexical reference every BEIR table carries, through bm25s (pure Python and numpy, sparse matrices: a
SciFact index in about a second, and no Java, which Pyserini's Lucene would need). Its run is scored by the same
pytrec_eval code as the dense search (evaluation/scoring.py run_scores), with the same identical-id rule: a document
whose id is the query's own is dropped before the top 100 are cut."""

from __future__ import annotations

import logging
import time

import numpy as np

from sbert_repro.config.encoding import BM25Config
from sbert_repro.data.corpus import document_text
from sbert_repro.data.loaders import RetrievalData
from sbert_repro.evaluation.metrics import RETRIEVAL_DEPTH
from sbert_repro.evaluation.run_files import TaskRun
from sbert_repro.evaluation.scoring import run_scores

logger = logging.getLogger(__name__)


def _tokenize(texts: list[str], config: BM25Config):  # -> bm25s.tokenization.Tokenized
    import bm25s

    stemmer = None
    if config.stemmer != "none":
        import Stemmer  # PyStemmer: Snowball's stemmers in C

        stemmer = Stemmer.Stemmer(config.stemmer)
    # bm25s's own tokeniser: lower-cased runs of two or more word characters (scikit-learn's pattern).
    return bm25s.tokenize(texts, stopwords=None if config.stopwords == "none" else config.stopwords, stemmer=stemmer,
                          show_progress=False)


def bm25_run(data: RetrievalData, config: BM25Config, depth: int = RETRIEVAL_DEPTH
             ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Each query's top `depth` documents by BM25 over title and text, {qid: {doc_id: score}}, its own id dropped
    first; a document sharing no term with the query is not retrieved (as Lucene retrieves). And the speeds."""
    import bm25s

    doc_ids, query_ids = list(data.corpus), list(data.queries)
    start = time.perf_counter()
    retriever = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
    retriever.index(_tokenize([document_text(doc["title"], doc["text"]) for doc in data.corpus.values()], config),
                    show_progress=False)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    rows, scores = retriever.retrieve(_tokenize(list(data.queries.values()), config),
                                      k=min(depth + 1, len(doc_ids)), show_progress=False)
    search_s = time.perf_counter() - start
    run: dict[str, dict[str, float]] = {}
    for qid, hits, scored in zip(query_ids, np.asarray(rows), np.asarray(scores), strict=True):
        ranked = [(doc_ids[row], float(score)) for row, score in zip(hits, scored, strict=True)
                  if score > 0 and doc_ids[row] != qid]
        run[qid] = dict(ranked[:depth])
    return run, {"index_docs_per_s": len(doc_ids) / max(index_s, 1e-9),
                 "search_queries_per_s": len(query_ids) / max(search_s, 1e-9)}


def score_bm25(retrieval_sets: dict[str, RetrievalData], config: BM25Config, runs: dict[str, TaskRun]
               ) -> tuple[dict[str, float], dict[str, float]]:
    """Every task's metrics ({"task/metric": x100}, as evaluate_tasks keys them) and speeds; each task's run and
    per-query scores under its name in `runs`."""
    scores, speeds = {}, {}
    for name, data in retrieval_sets.items():
        run, speed = bm25_run(data, config)
        kept: list[TaskRun] = []
        scores.update({f"{name}/{metric}": value for metric, value in run_scores(run, data, kept).items()})
        speeds.update({f"{name}/{what}": value for what, value in speed.items()})
        runs[name] = kept[0]
        logger.info("bm25 %s: nDCG@10 %.2f", name, scores[f"{name}/ndcg@10"])
    return scores, speeds
