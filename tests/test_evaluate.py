"""Evaluation without a real model: FAISS against brute force, and exact metrics from a fake encoder
that one-hot encodes keywords (as sentence-transformers' own IR evaluator tests do)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sbert_repro.data.loaders import RetrievalData, STSPairs, retrieval_from_sts
from sbert_repro.data.tasks import RETRIEVAL_TASKS
from sbert_repro.evaluation import scoring as evaluate
from sbert_repro.search import faiss_index as index

KEYWORDS = ["apple", "banana", "cherry", "grape", "lemon"]


class KeywordEncoder:
    """Each sentence becomes the (normalised) count vector of the keywords it contains."""

    def __init__(self, extra: dict[str, list[float]] | None = None):
        self.extra = extra or {}
        self.calls = 0

    def encode(self, sentences, batch_size, normalize_embeddings, convert_to_numpy, show_progress_bar):
        self.calls += 1
        vectors = np.array([self.extra.get(s) or [s.split().count(k) for k in KEYWORDS] for s in sentences],
                           dtype=np.float32)
        if normalize_embeddings:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def test_faiss_top_k_equals_numpy_brute_force():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(500, 24)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = rng.normal(size=(30, 24)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores, rows = index.search(index.build_index(index.EXACT, corpus, 0, 0), queries, k=10)
    similarities = queries @ corpus.T
    expected_rows = np.argsort(-similarities, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, np.take_along_axis(similarities, expected_rows, axis=1), rtol=1e-5)


def test_search_asks_for_no_more_than_the_corpus_holds():
    corpus = np.eye(3, dtype=np.float32)
    scores, rows = index.search(index.build_index(index.EXACT, corpus, 0, 0), corpus[:1], k=100)
    assert rows.shape == (1, 3) and rows[0, 0] == 0


def test_retrieval_metrics_exact_with_a_keyword_encoder():
    data = RetrievalData(
        corpus={"d1": {"title": "", "text": "apple"}, "d2": {"title": "apple", "text": "banana"},
                "d3": {"title": "", "text": "banana"}, "d4": {"title": "", "text": "cherry"}},
        queries={"q1": "apple", "q2": "banana"},
        qrels={"q1": {"d2": 1}, "q2": {"d3": 1}},
        source="test")
    scores, speeds = evaluate.score_retrieval(KeywordEncoder(), data, batch_size=2)
    # q1 ranks d1 (cos 1) then d2 ("apple banana", cos 0.71): its document is 2nd; q2 finds d3 first.
    assert scores["ndcg@10"] == pytest.approx(100 * (1 / math.log2(3) + 1) / 2)
    assert scores["mrr@10"] == pytest.approx(100 * (1 / 2 + 1) / 2)
    assert scores["recall@1"] == pytest.approx(50.0)
    assert scores["recall@10"] == pytest.approx(100.0)
    assert scores["map@100"] == pytest.approx(100 * (1 / 2 + 1) / 2)
    assert speeds["corpus_encode_per_s"] > 0 and speeds["search_queries_per_s"] > 0


def test_stsb_retrieval_derivation_and_the_query_never_finds_itself():
    pairs = STSPairs(
        sentences1=["apple", "apple", "banana", "cherry", "grape"],
        sentences2=["apple banana", "apple lemon lemon", "cherry", "grape", "grape"],
        scores=[4.0, 3.9, 4.6, 1.0, 5.0],
        source="test")
    data = retrieval_from_sts(pairs, RETRIEVAL_TASKS["stsb-retrieval"])
    by_text = {doc["text"]: doc_id for doc_id, doc in data.corpus.items()}
    assert sorted(by_text) == ["apple", "apple banana", "apple lemon lemon", "banana", "cherry", "grape"]
    # 3.9 is below 4.0; cherry/grape scores 1.0; grape/grape pairs a sentence with itself: no query
    assert data.qrels == {by_text["apple"]: {by_text["apple banana"]: 1},
                          by_text["banana"]: {by_text["cherry"]: 1}}
    assert data.queries == {by_text["apple"]: "apple", by_text["banana"]: "banana"}
    # Each query's own sentence ranks first (cosine 1) and must be skipped. apple: then "apple banana"
    # (0.71, relevant) before "apple lemon lemon" (0.45). banana: then "apple banana" (0.71) before its
    # relevant "cherry" (0.6, through the extra vector).
    encoder = KeywordEncoder(extra={"cherry": [0.0, 0.6, 0.8, 0.0, 0.0]})
    scores, _ = evaluate.score_retrieval(encoder, data, batch_size=4)
    assert scores["recall@10"] == pytest.approx(100.0)
    assert scores["mrr@10"] == pytest.approx(100 * (1 + 1 / 2) / 2)


def test_score_sts_encodes_each_distinct_sentence_once_and_correlates_cosines():
    pairs = STSPairs(sentences1=["apple", "apple", "apple cherry", "grape"],
                     sentences2=["apple", "banana", "cherry", "lemon grape"],
                     scores=[5.0, 0.0, 3.5, 4.0], source="test")
    encoder = KeywordEncoder()
    scores, per_second = evaluate.score_sts(encoder, pairs, batch_size=8)
    assert encoder.calls == 1
    # cosines 1, 0, 0.71, 0.71 against gold 5, 0, 3.5, 4: Spearman of ranks (4,1,2.5,2.5) vs (4,1,2,3)
    assert scores["spearman"] == pytest.approx(100 * 4.5 / math.sqrt(4.5 * 5))
    assert per_second > 0


def test_evaluate_tasks_averages_only_when_all_seven_sts_tasks_ran():
    pairs = STSPairs(["apple", "banana", "apple"], ["apple", "cherry", "apple banana"], [5.0, 0.0, 3.0], "t")
    scores, _ = evaluate.evaluate_tasks(KeywordEncoder(), {"stsb": pairs}, {}, batch_size=4)
    assert "sts-avg/spearman" not in scores and "stsb/spearman" in scores
    # seven different sets (gold reversed for some), so a wrong average cannot pass
    reversed_pairs = STSPairs(pairs.sentences1, pairs.sentences2, [0.0, 5.0, 2.0], "r")
    names = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
    seven = {name: (pairs if i < 4 else reversed_pairs) for i, name in enumerate(names)}
    scores, _ = evaluate.evaluate_tasks(KeywordEncoder(), seven, {}, batch_size=4)
    each = [scores[f"{name}/spearman"] for name in names]
    assert each[0] != each[-1]
    assert scores["sts-avg/spearman"] == pytest.approx((4 * each[0] + 3 * each[-1]) / 7)


def test_a_beir_folder_scores_what_pytrec_eval_gives_with_identical_ids_removed(tmp_path):
    """Dangling judgements and a query that is also a document: our score equals pytrec_eval's on the run file
    (every document's cosine, the query's own document removed, the top 100 kept), as BEIR's evaluation does."""
    import pytrec_eval
    from conftest import write_jsonl

    from sbert_repro.data.loaders import load_retrieval

    words = KEYWORDS + [f"{a} {b}" for a in KEYWORDS for b in KEYWORDS if a < b]
    corpus = [{"_id": f"d{i}", "title": "", "text": text} for i, text in enumerate(words)]
    corpus.append({"_id": "q1", "title": "", "text": "apple"})  # query q1 is a document of the corpus too
    folder = tmp_path / "mini"
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", [{"_id": "q1", "text": "apple"}, {"_id": "q2", "text": "banana cherry"},
                                           {"_id": "q3", "text": "grape"}])
    (folder / "qrels").mkdir()
    (folder / "qrels/test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td5\t1\nq1\tgone\t2\nq2\td2\t1.0\nq2\td11\t2\nq3\td3\t0\nq9\td1\t1\n")
    data = load_retrieval(str(folder), None)
    scores, _ = evaluate.score_retrieval(KeywordEncoder(), data, batch_size=8)

    encoder = KeywordEncoder()
    docs = encoder.encode([c["text"] for c in corpus], 8, True, True, False)
    run = {}
    for qid, text in [("q1", "apple"), ("q2", "banana cherry"), ("q3", "grape")]:
        cosines = docs @ encoder.encode([text], 1, True, True, False)[0]
        scored = {c["_id"]: float(cos) for c, cos in zip(corpus, cosines, strict=True) if c["_id"] != qid}
        run[qid] = dict(sorted(scored.items(), key=lambda item: item[1], reverse=True)[:100])
    qrels = {"q1": {"d5": 1, "gone": 2}, "q2": {"d2": 1, "d11": 2}, "q3": {"d3": 0}}  # q9 has no text
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10", "map_cut.100"}).evaluate(run)
    for ours, key in [("ndcg@10", "ndcg_cut_10"), ("recall@10", "recall_10"), ("map@100", "map_cut_100")]:
        assert scores[ours] == pytest.approx(100 * np.mean([trec[qid][key] for qid in qrels]), abs=1e-6), ours
    assert scores["ndcg@10"] < 100 * 2 / 3  # q1's missing document keeps it below 1; q3 judged nothing relevant


def test_the_own_document_goes_before_the_cut_so_a_query_keeps_every_hit():
    doc_ids = [f"d{i}" for i in range(150)] + ["q"]
    rows = np.array([[150, *range(100)]])  # the query's own document first, then 100 others
    similarities = np.linspace(1.0, 0.0, 101)[None, :].astype(np.float32)
    run = evaluate.retrieval_run(similarities, rows, doc_ids, ["q"])
    assert "q" not in run["q"] and len(run["q"]) == 100
    assert list(run["q"])[:2] == ["d0", "d1"]


def test_mteb_reads_back_the_mteb_format_results_evaluate_writes(tiny_model_dir, tiny_data_dir, tmp_path):
    import json

    mteb = pytest.importorskip("mteb", reason="the test extra mteb is not installed")
    from sbert_repro.cli.main import main

    out = tmp_path / "run"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--sts-tasks",
                 "stsb,sickr", "--retrieval-tasks", "scifact,stsb-retrieval", "--output-dir", str(out),
                 "--device", "cpu"]) == 0
    record = json.loads((out / "record.json").read_text())
    loaded = mteb.ResultCache(out / "mteb-format").load_results(require_model_meta=False, include_remote=False)
    [model] = loaded.model_results
    found = {result.task_name: result for result in model.task_results}
    assert sorted(found) == ["SICK-R", "STSBenchmark", "SciFact"]  # stsb-retrieval is ours alone: no MTEB name
    assert model.model_name == f"sbert-repro/{tiny_model_dir.name}"
    assert found["STSBenchmark"].get_score() == pytest.approx(record["scores"]["stsb/spearman"] / 100)
    assert found["SciFact"].get_score() == pytest.approx(record["scores"]["scifact/ndcg@10"] / 100)
    assert found["SciFact"].dataset_revision == RETRIEVAL_TASKS["scifact"].hub_revision
    assert found["STSBenchmark"].dataset_revision == mteb.get_task("STSBenchmark").metadata.revision
    assert found["SciFact"].evaluation_time > 0
    assert sorted(record["mteb_format"]) == sorted(
        str(path.relative_to(out)) for path in (out / "mteb-format").rglob("*.json"))
    # a fine-tune: the raw model's scores under its name, the trained model's under its run folder's
    trained = tmp_path / "trained"
    assert main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--epochs", "1",
                 "--sts-tasks", "stsb", "--retrieval-tasks", "none", "--output-dir", str(trained),
                 "--device", "cpu"]) == 0
    record = json.loads((trained / "record.json").read_text())
    loaded = mteb.ResultCache(trained / "mteb-format").load_results(require_model_meta=False, include_remote=False)
    found = {result.model_name: result.task_results[0].get_score() for result in loaded.model_results}
    raw, tuned = (record[part]["scores"]["stsb/spearman"] / 100 for part in ("baseline", "finetuned"))
    assert found == pytest.approx({f"sbert-repro/{tiny_model_dir.name}": raw, "sbert-repro/trained": tuned})


def test_mteb_format_holds_only_mtebs_own_split():
    from sbert_repro.evaluation.mteb_results import task_results

    scores = {"stsb/spearman": 80.0, "stsb/pearson": 79.0, "scifact/ndcg@10": 60.0, "mydata/ndcg@10": 50.0}
    assert sorted(task_results(scores, {})) == ["STSBenchmark", "SciFact"]  # a folder's task has no MTEB name
    assert sorted(task_results(scores, {}, retrieval_split="dev")) == ["STSBenchmark"]  # not MTEB's test split
    [split] = task_results(scores, {})["SciFact"]["scores"]["test"]
    assert split["main_score"] == split["ndcg_at_10"] == pytest.approx(0.6)
