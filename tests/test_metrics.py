"""Metrics against values computed by hand, and against trec_eval's own implementation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from sbert_repro import metrics

RANKED = ["d1", "d2", "d3", "d4"]
JUDGEMENTS = {"d2": 1, "d4": 2, "d9": 1}  # d9 is relevant but never retrieved


def test_ndcg_uses_linear_gain_and_all_judged_documents_in_the_ideal():
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics.ndcg_at_k(RANKED, JUDGEMENTS, 10) == pytest.approx(dcg / ideal)
    assert metrics.ndcg_at_k(RANKED, JUDGEMENTS, 3) == pytest.approx((1 / math.log2(3)) / ideal)
    assert metrics.ndcg_at_k(RANKED, JUDGEMENTS, 1) == 0.0


def test_mrr_recall_and_average_precision_by_hand():
    assert metrics.mrr_at_k(RANKED, JUDGEMENTS, 10) == 0.5
    assert metrics.mrr_at_k(RANKED, JUDGEMENTS, 1) == 0.0
    assert metrics.recall_at_k(RANKED, JUDGEMENTS, 1) == 0.0
    assert metrics.recall_at_k(RANKED, JUDGEMENTS, 2) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(RANKED, JUDGEMENTS, 100) == pytest.approx(2 / 3)
    # hits at ranks 2 and 4: precision 1/2 and 2/4, divided by the 3 relevant documents
    assert metrics.average_precision_at_k(RANKED, JUDGEMENTS, 100) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert metrics.average_precision_at_k(RANKED, JUDGEMENTS, 3) == pytest.approx((1 / 2) / 3)


def test_zero_grade_is_not_relevant():
    assert metrics.ndcg_at_k(["a", "b"], {"a": 0, "b": 1}, 10) == pytest.approx(1 / math.log2(3))
    assert metrics.mrr_at_k(["a", "b"], {"a": 0, "b": 1}, 10) == 0.5


def test_spearman_gives_ties_average_ranks():
    # gold ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4): r = 4.5 / sqrt(5 * 4.5) = sqrt(0.9)
    assert metrics.spearman([0.1, 0.2, 0.3, 0.4], [1, 1, 2, 3]) == pytest.approx(math.sqrt(0.9))
    assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_cosine_similarities_by_hand():
    u = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    v = np.array([[0.0, 2.0], [2.0, 2.0], [4.0, 3.0]])
    assert metrics.cosine_similarities(u, v) == pytest.approx([0.0, 1.0, 24 / 25])


def test_retrieval_scores_average_over_judged_queries_and_count_missing_runs_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}  # q3 has nothing relevant: not scored
    scores = metrics.retrieval_scores({"q1": ["a", "x"]}, qrels)
    assert scores["ndcg@10"] == pytest.approx(0.5)
    assert scores["recall@1"] == pytest.approx(0.5)
    assert set(scores) == set(metrics.RETRIEVAL_METRICS)
    with pytest.raises(ValueError):
        metrics.retrieval_scores({}, {"q": {"a": 0}})


def test_agrees_with_trec_eval_on_random_graded_runs():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(150)]
    qrels = {f"q{i}": {doc: rng.choice([1, 1, 2, 3]) for doc in rng.sample(docs, rng.randint(1, 12))}
             for i in range(40)}
    run = {qid: rng.sample(docs, 100) for qid in qrels}
    # trec_eval ranks by score: give strictly decreasing scores in our order
    trec_run = {qid: {doc: float(100 - rank) for rank, doc in enumerate(ranked)} for qid, ranked in run.items()}
    measures = {"ndcg_cut.10", "recall.1", "recall.10", "recall.100", "map_cut.100"}
    trec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(trec_run)
    ours = metrics.retrieval_scores(run, qrels)
    for name, key in [("ndcg@10", "ndcg_cut_10"), ("recall@1", "recall_1"), ("recall@10", "recall_10"),
                      ("recall@100", "recall_100"), ("map@100", "map_cut_100")]:
        assert ours[name] == pytest.approx(np.mean([trec[qid][key] for qid in qrels]), abs=1e-9), name
    # trec_eval's reciprocal rank has no cut: compare on runs of 10 documents
    top10 = {qid: dict(list(scored.items())[:10]) for qid, scored in trec_run.items()}
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    expected = np.mean([trec[qid]["recip_rank"] if qid in trec else 0.0 for qid in qrels])
    assert ours["mrr@10"] == pytest.approx(expected, abs=1e-9)
