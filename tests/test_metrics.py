"""Metrics against values computed by hand, and against trec_eval's own implementation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from sbert_repro.evaluation import metrics

# d1..d4 retrieved in that order; d9 is judged relevant but never retrieved (a document missing from the corpus)
RUN = {"q": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6}}
QRELS = {"q": {"d2": 1, "d4": 2, "d9": 1}}


def test_ndcg_mrr_recall_and_map_by_hand():
    scores = metrics.retrieval_scores(RUN, QRELS)
    # linear gain, discount 1/log2(rank + 1); the ideal ranking holds every judged grade, d9's too
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert scores["ndcg@10"] == pytest.approx(dcg / ideal)
    assert scores["mrr@10"] == pytest.approx(1 / 2)
    assert scores["recall@1"] == 0.0
    assert scores["recall@10"] == pytest.approx(2 / 3)
    # hits at ranks 2 and 4: precision 1/2 and 2/4, divided by the 3 relevant documents
    assert scores["map@100"] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_mrr_counts_only_the_top_ten():
    run = {"q": {f"d{rank:02d}": 1 - rank / 100 for rank in range(1, 12)}}  # the relevant one is 11th
    assert metrics.retrieval_scores(run, {"q": {"d11": 1}})["mrr@10"] == 0.0
    assert metrics.retrieval_scores(run, {"q": {"d10": 1}})["mrr@10"] == pytest.approx(1 / 10)


def test_ties_are_ranked_as_trec_eval_ranks_them():
    # equal scores: document ids in reverse order, so "b" comes before "a"
    assert metrics.trec_order({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]
    assert metrics.retrieval_scores({"q": {"a": 1.0, "b": 1.0}}, {"q": {"a": 1}})["mrr@10"] == pytest.approx(1 / 2)


def test_zero_grade_is_not_relevant():
    scores = metrics.retrieval_scores({"q": {"a": 2.0, "b": 1.0}}, {"q": {"a": 0, "b": 1}})
    assert scores["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert scores["mrr@10"] == pytest.approx(1 / 2)


def test_every_judged_query_counts_and_a_missing_run_scores_zero():
    # q2 retrieved nothing and q3 has nothing relevant: both score 0, as in BEIR and mteb
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    scores = metrics.retrieval_scores({"q1": {"a": 1.0, "x": 0.5}, "q3": {"c": 1.0}}, qrels)
    assert scores["ndcg@10"] == pytest.approx(1 / 3)
    assert scores["recall@1"] == pytest.approx(1 / 3)
    assert set(scores) == set(metrics.RETRIEVAL_METRICS)
    with pytest.raises(ValueError):
        metrics.retrieval_scores({}, {"q": {"a": 0}})


def test_spearman_gives_ties_average_ranks():
    # gold ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4): r = 4.5 / sqrt(5 * 4.5) = sqrt(0.9)
    assert metrics.spearman([0.1, 0.2, 0.3, 0.4], [1, 1, 2, 3]) == pytest.approx(math.sqrt(0.9))
    assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_cosine_similarities_by_hand():
    u = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    v = np.array([[0.0, 2.0], [2.0, 2.0], [4.0, 3.0]])
    assert metrics.cosine_similarities(u, v) == pytest.approx([0.0, 1.0, 24 / 25])


def test_agrees_with_trec_eval_on_random_graded_runs():
    import pytrec_eval

    rng = random.Random(7)
    docs = [f"d{i}" for i in range(150)]
    qrels = {f"q{i}": {doc: rng.choice([0, 1, 1, 2, 3]) for doc in rng.sample(docs, rng.randint(1, 12))}
             for i in range(40)}
    run = {qid: {doc: round(rng.random(), 2) for doc in rng.sample(docs, 100)} for qid in qrels}  # ties too
    measures = {"ndcg_cut.10", "recall.1", "recall.10", "recall.100", "map_cut.100"}
    trec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = metrics.retrieval_scores(run, qrels)
    for name, key in [("ndcg@10", "ndcg_cut_10"), ("recall@1", "recall_1"), ("recall@10", "recall_10"),
                      ("recall@100", "recall_100"), ("map@100", "map_cut_100")]:
        assert ours[name] == pytest.approx(np.mean([trec[qid][key] for qid in qrels]), abs=1e-9), name
    # MRR@10 by hand: the first relevant document among the top 10 in trec_eval's order
    expected = []
    for qid, scored in run.items():
        ranked = sorted(scored, key=lambda doc: (scored[doc], doc), reverse=True)[:10]
        ranks = [rank for rank, doc in enumerate(ranked, start=1) if qrels[qid].get(doc, 0) > 0]
        expected.append(1 / ranks[0] if ranks else 0.0)
    assert ours["mrr@10"] == pytest.approx(np.mean(expected), abs=1e-9)
