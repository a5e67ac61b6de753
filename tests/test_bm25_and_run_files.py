"""BM25 (bm25s) against a ranking computed by hand; the TREC run file and per-query scores each retrieval task leaves
beside its record, read back and re-scored by pytrec_eval; `sbert-repro compare` and its paired t-test."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from test_cli import run_cli

from sbert_repro.config.encoding import BM25Config
from sbert_repro.data.loaders import RetrievalData, load_retrieval
from sbert_repro.evaluation.bm25 import bm25_run
from sbert_repro.evaluation.run_files import read_trec

CORPUS = {"d1": "cat sat mat", "d2": "dog chased cat", "d3": "bird sky", "d4": "cat dog cat", "d5": "sky blue sea"}


def lucene_bm25(query: str, document: str, k1: float = 1.2, b: float = 0.75) -> float:
    """Lucene's BM25 of one document, by its formula: idf ln(1 + (N - df + 0.5) / (df + 0.5)) times
    tf / (tf + k1 (1 - b + b dl / avgdl)), summed over the query's terms."""
    texts = [text.split() for text in CORPUS.values()]
    words, average = document.split(), sum(len(text) for text in texts) / len(texts)
    score = 0.0
    for term in query.split():
        df, tf = sum(term in text for text in texts), words.count(term)
        if tf:
            idf = math.log(1 + (len(texts) - df + 0.5) / (df + 0.5))
            score += idf * tf / (tf + k1 * (1 - b + b * len(words) / average))
    return score


def test_bm25_ranks_five_documents_as_computed_by_hand():
    queries = {"q": "cat dog", "d2": "dog cat", "none": "whale"}
    data = RetrievalData(corpus={doc_id: {"title": "", "text": text} for doc_id, text in CORPUS.items()},
                         queries=queries, qrels={"q": {"d4": 1}}, source="hand-made")
    run, speeds = bm25_run(data, BM25Config(stemmer="none", stopwords="none"))
    by_hand = {doc_id: lucene_bm25(queries["q"], text) for doc_id, text in CORPUS.items()}
    expected = sorted((doc_id for doc_id, score in by_hand.items() if score > 0), key=lambda d: -by_hand[d])
    assert expected == ["d4", "d2", "d1"]  # d4 holds cat twice and dog; d2 both once; d1 cat once; d3, d5 neither
    assert list(run["q"]) == expected
    for doc_id in expected:
        assert run["q"][doc_id] == pytest.approx(by_hand[doc_id], rel=1e-5)
    assert list(run["d2"]) == ["d4", "d1"]  # its own document (same id) is never counted
    assert run["none"] == {} and speeds["search_queries_per_s"] > 0


def test_bm25_stems_english_by_default():
    data = RetrievalData(corpus={"a": {"title": "", "text": "cats are chasing"}, "b": {"title": "", "text": "sky"}},
                         queries={"q": "the cat chased"}, qrels={"q": {"a": 1}}, source="hand-made")
    assert list(bm25_run(data, BM25Config())[0]["q"]) == ["a"]
    assert bm25_run(data, BM25Config(stemmer="none"))[0]["q"] == {}


@pytest.fixture(scope="module")
def evaluated(tiny_model_dir: Path, tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sbert_repro.cli.main import main

    out = tmp_path_factory.mktemp("runs") / "dense"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--sts-tasks", "none",
                 "--retrieval-tasks", "scifact", "--output-dir", str(out), "--device", "cpu"]) == 0
    return out


def test_the_trec_file_rescored_by_pytrec_eval_gives_the_recorded_ndcg(evaluated: Path, tiny_data_dir: Path):
    import pytrec_eval

    record = json.loads((evaluated / "record.json").read_text())
    assert record["retrieval_files"]["scifact"] == {"run": "retrieval/scifact.trec",
                                                    "per_query": "retrieval/scifact.per-query.json"}
    lines = (evaluated / "retrieval/scifact.trec").read_text().splitlines()
    first = lines[0].split()
    assert len(first) == 6 and first[1] == "Q0" and first[3] == "1" and first[5] == Path(record["config"]["model"]).name
    run = read_trec(evaluated / "retrieval/scifact.trec")
    data = load_retrieval("scifact", tiny_data_dir)
    assert set(run) == set(data.queries) and all(len(ranked) <= 100 for ranked in run.values())
    per_query = pytrec_eval.RelevanceEvaluator(data.qrels, {"ndcg_cut.10"}).evaluate(run)
    rescored = 100 * sum(per_query[qid]["ndcg_cut_10"] for qid in data.qrels) / len(data.qrels)
    assert rescored == pytest.approx(record["scores"]["scifact/ndcg@10"], abs=1e-9)
    saved = json.loads((evaluated / "retrieval/scifact.per-query.json").read_text())["queries"]
    assert set(saved) == set(data.qrels)
    assert sum(scores["ndcg@10"] for scores in saved.values()) / len(saved) == pytest.approx(
        record["scores"]["scifact/ndcg@10"], abs=1e-9)


def test_bm25_is_recorded_like_a_run_and_compared_by_a_paired_test(evaluated: Path, tiny_data_dir: Path,
                                                                    tmp_path: Path, capsys):
    from scipy.stats import ttest_rel

    from sbert_repro.evaluation.comparison import compare_runs

    lexical = tmp_path / "bm25"
    code, err = run_cli(["bm25", "--data-dir", str(tiny_data_dir), "--retrieval-tasks", "scifact",
                         "--output-dir", str(lexical)], capsys)
    assert code == 0, err
    record = json.loads((lexical / "record.json").read_text())
    assert record["kind"] == "bm25" and record["config"]["k1"] == 1.2 and record["environment"]["packages"]
    assert (lexical / "retrieval/scifact.trec").is_file()
    comparison = compare_runs(evaluated, lexical, "ndcg@10")
    row = comparison["tasks"]["scifact"]
    dense = json.loads((evaluated / "record.json").read_text())["scores"]["scifact/ndcg@10"]
    assert row["queries"] == 12 and row["mean_a"] == pytest.approx(dense)
    assert row["mean_b"] == pytest.approx(record["scores"]["scifact/ndcg@10"])
    assert row["difference"] == pytest.approx(row["mean_b"] - row["mean_a"])
    a, b = (json.loads((folder / "retrieval/scifact.per-query.json").read_text())["queries"]
            for folder in (evaluated, lexical))
    assert row["p_value"] == pytest.approx(ttest_rel([b[q]["ndcg@10"] for q in a], [a[q]["ndcg@10"] for q in a])
                                           .pvalue)
    from sbert_repro.cli.main import main

    assert main(["compare", str(evaluated), str(lexical)]) == 0
    assert f"| scifact | 12 | {row['mean_a']:.2f} | {row['mean_b']:.2f} | {row['difference']:+.2f} |" in \
        capsys.readouterr().out


def test_compare_prints_the_paired_difference(evaluated: Path, tmp_path: Path, capsys):
    from sbert_repro.cli.main import main

    assert main(["compare", str(evaluated), str(evaluated)]) == 0
    out = capsys.readouterr().out
    assert "| scifact | 12 |" in out and "| +0.00 | - | 1 |" in out  # a run against itself: no difference


def test_compare_refuses_a_folder_without_per_query_scores(evaluated: Path, tmp_path: Path, capsys):
    (tmp_path / "old-run").mkdir()
    (tmp_path / "old-run" / "record.json").write_text("{}")
    code, err = run_cli(["compare", str(evaluated), str(tmp_path / "old-run")], capsys)
    assert code == 2 and err == (f"sbert-repro: error: RUN_B {tmp_path / 'old-run'}: no per-query scores "
                                 "(retrieval/*.per-query.json); give a run folder of a retrieval task scored by "
                                 "`evaluate`, `finetune` (its fine-tuned model; the raw one's are in baseline/) or "
                                 "`bm25`")


def test_compare_refuses_a_per_query_score_that_is_not_a_number(evaluated: Path, tmp_path: Path, capsys):
    damaged = Path(shutil.copytree(evaluated, tmp_path / "damaged"))
    path = next((damaged / "retrieval").glob("*.per-query.json"))
    content = json.loads(path.read_text())
    qid = next(iter(content["queries"]))
    content["queries"][qid]["ndcg@10"] = float("nan")
    path.write_text(json.dumps(content))  # Python writes NaN, as JSON itself cannot
    code, err = run_cli(["compare", str(evaluated), str(damaged)], capsys)
    assert code == 2 and err == (f"sbert-repro: error: RUN_B: {path}: query {qid!r} has ndcg@10 nan, not a score; "
                                 "score the run again")


def test_an_id_with_whitespace_never_reaches_a_trec_run(tmp_path: Path, caplog):
    """A newline in a document id would forge a whole run line: such a task gets its per-query scores alone."""
    import logging

    from sbert_repro.evaluation.run_files import TaskRun, write_task_runs

    forged = "doc-1\nq1 Q0 doc-9 1 99.0 forged"
    runs = {"mine": TaskRun({"q1": {forged: 0.9, "doc-2": 0.5}}, {"q1": {"ndcg@10": 100.0}}),
            "clean": TaskRun({"q1": {"doc-1": 0.9, "doc-2": 0.5}}, {"q1": {"ndcg@10": 100.0}})}
    with caplog.at_level(logging.WARNING, logger="sbert_repro"):
        written = write_task_runs(tmp_path, runs, "model")
    assert written == {"mine": {"per_query": "retrieval/mine.per-query.json"},
                       "clean": {"run": "retrieval/clean.trec", "per_query": "retrieval/clean.per-query.json"}}
    assert not (tmp_path / "retrieval" / "mine.trec").exists()
    assert read_trec(tmp_path / "retrieval" / "clean.trec") == {"q1": {"doc-1": 0.9, "doc-2": 0.5}}
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("mine: an id with whitespace ('doc-1\\nq1 Q0 doc-9 1 99.0 forged') cannot be written")
