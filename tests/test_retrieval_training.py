"""--objective retrieval: pairs from qrels, the train/test overlap check, FAISS hard-negative mining and its rules,
batches without duplicates, a tiny model that learns, resume after a kill, and the bad inputs users see."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TOPICS, kill_once_saved, start_slowed_run, write_jsonl

from sbert_repro.cli.main import main
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import RetrievalData
from sbert_repro.data.retrieval_pairs import (
    RetrievalPairs,
    check_no_overlap,
    split_queries,
    training_pairs,
    validation_task,
)
from sbert_repro.errors import UsageError
from sbert_repro.train.mining import mine_negatives


def corpus_of(*texts: str) -> dict[str, dict[str, str]]:
    return {f"d{i}": {"title": "", "text": text} for i, text in enumerate(texts)}


def test_pairs_are_one_per_relevant_document_and_skip_the_rest():
    data = RetrievalData(corpus=corpus_of("zero", "one", "two", "three"),
                         queries={"q1": "first", "q2": "second"},
                         qrels={"q1": {"d1": 1, "d2": 2, "d3": 0, "gone": 1}, "q2": {"d0": 1}}, source="t")
    pairs = training_pairs(data, ["q1", "q2"])
    assert list(zip(pairs.queries, pairs.documents, strict=True)) == [("first", "one"), ("first", "two"),
                                                                      ("second", "zero")]
    assert training_pairs(data, ["q2"]).documents == ["zero"]


def test_a_scored_query_id_is_refused_and_a_scored_query_text_left_out_of_training(caplog):
    scored = RetrievalData(corpus_of("a"), {"t1": "what is x"}, {"t1": {"d0": 1}}, source="test split")
    same_id = RetrievalData(corpus_of("a"), {"t1": "something else"}, {"t1": {"d0": 1}}, source="train split")
    with pytest.raises(UsageError, match="--train-task scifact: 1 of its 'train' query ids .* are also scored"):
        check_no_overlap(same_id, "scifact", "train", {"scifact": scored})
    same_text = RetrievalData(corpus_of("a", "b"), {"r8": "other", "r9": " what is x"},
                              {"r8": {"d1": 1}, "r9": {"d0": 1}}, source="train split")
    kept = check_no_overlap(same_text, "scifact", "train", {"scifact": scored})
    assert list(kept.queries) == list(kept.qrels) == ["r8"]
    assert kept.checks["train_queries_repeating_a_scored_query"] == 1
    assert "1 train quer(ies) repeat a scored query's text word for word (e.g. 'r9'); left out" in caplog.text
    assert check_no_overlap(same_id, "scifact", "train", {"nfcorpus": scored}) is same_id  # another task


def test_the_held_out_share_is_seeded_and_disjoint():
    ids = [f"q{i}" for i in range(50)]
    train, held_out = split_queries(ids, 0.1, seed=7)
    assert len(held_out) == 5 and not set(train) & set(held_out) and sorted(train + held_out) == sorted(ids)
    assert split_queries(ids, 0.1, seed=7) == (train, held_out)
    assert split_queries(ids, 0.1, seed=8)[1] != held_out


def test_validation_searches_judged_documents_plus_a_sample():
    corpus = corpus_of(*[f"doc {i}" for i in range(30)])
    data = RetrievalData(corpus, {"q1": "a", "q2": "b", "q3": "c"},
                         {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 0}}, source="t")
    validation = validation_task(data, ["q2", "q3"], size=10, seed=0)
    assert len(validation.corpus) == 10 and {"d1", "d2", "d3"} <= set(validation.corpus)
    assert list(validation.queries) == ["q2"]  # q3 has nothing relevant to find


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model_dir), device="cpu")


def pairs_in(corpus: dict[str, dict[str, str]], *pairs: tuple[str, str]) -> RetrievalPairs:
    """(query, relevant document text) pairs, each document named by its id in `corpus`."""
    id_of = {document["text"]: doc_id for doc_id, document in corpus.items()}
    return RetrievalPairs([query for query, _ in pairs], [text for _, text in pairs], source="t",
                          document_ids=[id_of[text] for _, text in pairs])


def test_mining_never_picks_a_judged_document_and_honours_the_margin(tiny_model, tmp_path):
    words = ["cat", "dog", "horse", "bird", "cow", "sheep", "pizza", "bread", "apple", "soup", "car", "bus"]
    texts = [f"all about the {word}" for word in words]
    corpus = corpus_of(*texts)
    vectors = tiny_model.encode(texts + ["where is the pizza"], normalize_embeddings=True)
    cosine = {doc: float(vectors[-1] @ vectors[j]) for j, doc in enumerate(texts)}
    # A margin that keeps half of the pizza query's candidates and excludes the others.
    positive = cosine["all about the pizza"]
    others = sorted(score for doc, score in cosine.items() if doc != "all about the pizza")
    margin = float(np.clip(1 - others[len(others) // 2] / positive, 0.0, 0.9))
    config = TrainConfig(objective="retrieval", hard_negatives=2, negative_margin=margin, eval_batch_size=8)
    pizza = pairs_in(corpus, ("where is the pizza", "all about the pizza"))
    mined, stats = mine_negatives(pizza, corpus, tiny_model, config, tmp_path / "cache")
    assert stats["pairs_mined"] == 1 and stats["relative_margin"] == margin
    [negatives] = mined.negatives
    assert len(negatives) == 2 and "all about the pizza" not in negatives
    above = [doc for doc, score in cosine.items() if score > positive - abs(positive) * margin + 1e-5]
    assert len(above) > 1 and not set(negatives) & set(above)  # the margin excluded some, and kept out every one
    assert negatives == sorted((doc for doc in cosine if doc not in above), key=cosine.get, reverse=True)[:2]
    # a resumed run mines without encoding: the corpus's vectors are cached, complete
    progress = json.loads((tmp_path / "cache" / "encode-progress.json").read_text())
    assert progress["done"] == progress["rows"] == len(texts)
    # A query whose relevant document is its own text: that document is the top candidate, and never a negative.
    cat = pairs_in(corpus, ("all about the cat", "all about the cat"), ("all about the cat", "all about the dog"))
    mined, _ = mine_negatives(cat, corpus, tiny_model, replace(config, negative_margin=0.0), None)
    assert all(not set(negatives) & {"all about the cat", "all about the dog"} for negatives in mined.negatives)


def test_mining_picks_what_sentence_transformers_mine_hard_negatives_picks(tiny_model, tmp_path):
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    texts = [f"we like the {a} {b}" for a in TOPICS["animal"] for b in TOPICS["food"]]  # words the model knows
    corpus = corpus_of(*texts)
    queries = [f"look at that {a} {b}" for a in TOPICS["vehicle"] for b in TOPICS["weather"][:2]]
    # Each query's relevant documents among its model's top few, so that some candidates fall within the margin
    # and most do not (one query with two relevant documents in two).
    vectors = tiny_model.encode(texts, normalize_embeddings=True)
    ranked = [np.argsort(-(vectors @ query))[:4] for query in tiny_model.encode(queries, normalize_embeddings=True)]
    judged = [(query, texts[row]) for n, query in enumerate(queries) for row in ranked[n][2:3 + n % 2]]
    pairs = pairs_in(corpus, *judged)
    config = TrainConfig(objective="retrieval", hard_negatives=3, negative_margin=0.01, eval_batch_size=8)
    mined, stats = mine_negatives(pairs, corpus, tiny_model, config, tmp_path / "cache")
    theirs = mine_hard_negatives(Dataset.from_dict({"query": pairs.queries, "document": pairs.documents}),
                                 tiny_model, corpus=texts, num_negatives=3, relative_margin=0.01,
                                 sampling_strategy="top", use_faiss=True, output_format="n-tuple", verbose=False)
    expected = {(row["query"], row["document"]): [row[f"negative_{n}"] for n in (1, 2, 3)] for row in theirs}
    assert stats["pairs_mined"] == len(expected) > len(pairs) // 2  # most pairs mined, not filled at random
    pairs_mined = zip(zip(pairs.queries, pairs.documents, strict=True), mined.negatives, strict=True)
    ours = {pair: negatives for pair, negatives in pairs_mined if pair in expected}
    assert ours == expected


def test_mining_refuses_a_cache_of_another_model_and_keeps_its_vectors(tiny_model, tmp_path):
    corpus = corpus_of(*[f"all about the {word}" for word in ("cat", "dog", "horse", "bird", "cow", "pizza")])
    pairs = pairs_in(corpus, ("where is the cat", "all about the cat"))
    config = TrainConfig(objective="retrieval", hard_negatives=1, negative_margin=0.0, eval_batch_size=8)
    mine_negatives(pairs, corpus, tiny_model, config, tmp_path / "cache", {"modules_sha256": "a" * 64})
    before = (tmp_path / "cache" / "embeddings.f32").read_bytes()
    with pytest.raises(UsageError, match="modules_sha256: encoded aaaa"):
        mine_negatives(pairs, corpus, tiny_model, config, tmp_path / "cache", {"modules_sha256": "b" * 64})
    assert (tmp_path / "cache" / "embeddings.f32").read_bytes() == before


def test_a_pair_without_enough_candidates_gets_random_irrelevant_documents(tiny_model, tmp_path):
    corpus = corpus_of(*[f"all about the {word}" for word in ("cat", "dog", "horse", "bird", "cow", "sheep", "pizza")])
    pairs = pairs_in(corpus, ("where is the cat", "all about the cat"), ("where is the cat", "all about the dog"))
    # A margin of 0.99 leaves no candidate: each must score under 1% of the least similar relevant document.
    config = TrainConfig(objective="retrieval", hard_negatives=3, negative_margin=0.99, eval_batch_size=8)
    mined, stats = mine_negatives(pairs, corpus, tiny_model, config, None)
    assert stats["pairs_given_random_negatives"] == 2 and stats["pairs_mined"] == 0
    for negatives in mined.negatives:
        assert len(set(negatives)) == 3 and not set(negatives) & {"all about the cat", "all about the dog"}


def test_length_grouped_batches_hold_no_text_twice_and_cover_every_row():
    from datasets import Dataset

    from sbert_repro.train.batching import LengthGroupedNoDuplicatesBatchSampler

    queries = ["q1", "q1", "q1", "q2", "q3", "q4", "q4", "q5", "q6", "q7"]
    documents = [f"document {i}" for i in range(10)]
    dataset = Dataset.from_dict({"query": queries, "document": documents})
    sampler = LengthGroupedNoDuplicatesBatchSampler(dataset, batch_size=4, drop_last=False, seed=3)
    batches = list(sampler)
    assert sorted(row for batch in batches for row in batch) == list(range(10))
    for batch in batches:
        texts = [queries[row] for row in batch]
        assert len(texts) == len(set(texts)), batches


def test_retrieval_batches_never_repeat_a_text_grouped_or_not(tmp_path):
    from sentence_transformers.base.sampler import BatchSamplers

    from sbert_repro.train.batching import LengthGroupedNoDuplicatesBatchSampler
    from sbert_repro.train.trainer import training_arguments

    grouped = training_arguments(TrainConfig(objective="retrieval", device="cpu"), tmp_path, 1, objective="retrieval")
    assert grouped.batch_sampler is LengthGroupedNoDuplicatesBatchSampler
    plain = training_arguments(TrainConfig(objective="retrieval", group_by_length=False, device="cpu"), tmp_path, 1,
                               objective="retrieval")
    assert plain.batch_sampler == BatchSamplers.NO_DUPLICATES


def beir_task_folder(root: Path, tiny_data_dir: Path, train_qrels: str | None) -> Path:
    """The tiny SciFact copy, with train judgements on the odd queries (the test ones are even); the first
    training query has two relevant documents."""
    data_dir = root / "data"
    shutil.copytree(tiny_data_dir, data_dir)
    if train_qrels is None:
        train_qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t1\n" + "".join(
            f"q{i}\td{i}\t1\n" for i in range(3, 24, 2))
    (data_dir / "retrieval/scifact/qrels/train.tsv").write_text(train_qrels)
    return data_dir


def retrieval_args(model: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--model", str(model), "--data-dir", str(data_dir), "--output-dir", str(out),
            "--objective", "retrieval", "--epochs", "4", "--batch-size", "4", "--lr", "3e-3",
            "--validation-share", "0.2", "--sts-tasks", "stsb", "--retrieval-tasks", "scifact", "--device", "cpu",
            "--precision", "fp32", *extra]


@pytest.fixture(scope="module")
def train_data_dir(tiny_data_dir, tmp_path_factory) -> Path:
    return beir_task_folder(tmp_path_factory.mktemp("retrieval"), tiny_data_dir, None)


@pytest.mark.parametrize("negatives", ["0", "1"])
def test_a_tiny_model_learns_the_ranking_and_the_record_says_how(tiny_model_dir, train_data_dir, tmp_path,
                                                                 negatives):
    out = tmp_path / "run"
    assert main(retrieval_args(tiny_model_dir, train_data_dir, out, "--hard-negatives", negatives,
                               "--mini-batch-size", "2")) == 0
    record = json.loads((out / "record.json").read_text())
    training = record["training"]
    split = record["retrieval_training"]
    assert training["objective"] == "retrieval" and training["epochs"] == 4
    assert training["train_pairs"] == split["train_pairs"] in (10, 11)  # 13 judged pairs, two queries held out
    losses = [entry["loss"] for entry in training["loss_history"]]
    quarter = max(1, len(losses) // 4)
    assert sum(losses[-quarter:]) / quarter < 0.8 * sum(losses[:quarter]) / quarter, losses
    assert [entry["epoch"] for entry in training["validation_history"]] == [1, 2, 3, 4]
    assert training["best_validation_ndcg@10"] == max(h["validation_ndcg@10"] for h in training["validation_history"])
    assert split["train_queries"] + split["validation_queries"] == 12 and split["validation_queries"] == 2
    assert record["config"]["max_seq_length"] == 64  # retrieval's 256, cut to the tiny model's positions
    if negatives == "1":
        assert split["hard_negatives"]["per_pair"] == 1
        mined = split["hard_negatives"]
        assert mined["pairs_mined"] + mined["pairs_given_random_negatives"] == split["train_pairs"]
    else:
        assert split["hard_negatives"] is None
    assert record["finetuned"]["scores"]["scifact/ndcg@10"] > record["baseline"]["scores"]["scifact/ndcg@10"]


def test_a_killed_retrieval_run_resumes_to_the_uninterrupted_scores(tiny_model_dir, train_data_dir, tmp_path):
    args = retrieval_args(tiny_model_dir, train_data_dir, tmp_path / "whole", "--hard-negatives", "1",
                          "--save-steps", "2")
    assert main(args) == 0
    whole = json.loads((tmp_path / "whole/record.json").read_text())

    out = tmp_path / "killed"
    args = retrieval_args(tiny_model_dir, train_data_dir, out, "--hard-negatives", "1", "--save-steps", "2")
    kill_once_saved(start_slowed_run("MultipleNegativesRankingLoss", 0.3, args),
                    out / "checkpoints/retrieval/checkpoint-6")
    assert json.loads((out / "record.json").read_text())["status"] == "incomplete"

    assert main([*args, "--resume"]) == 0
    resumed = json.loads((out / "record.json").read_text())
    assert resumed["status"] == "complete" and resumed["training"]["resumed_from"]
    assert resumed["retrieval_training"] == whole["retrieval_training"]
    for key, value in whole["finetuned"]["scores"].items():
        assert resumed["finetuned"]["scores"][key] == pytest.approx(value, abs=0.01), key


@pytest.mark.parametrize("extra, pattern", [
    (["--hard-negatives", "-1"], r"--hard-negatives must be 0 \(in-batch negatives only\) or a positive integer"),
    (["--negative-margin", "1.5"], r"--negative-margin must be in \[0, 1\)"),
    (["--mini-batch-size", "0"], r"--mini-batch-size must be a positive integer"),
    (["--train-task", "nosuch"], r"--train-task: unknown task 'nosuch'"),
    (["--train-task", "stsb-retrieval"], r"--train-task stsb-retrieval: built from stsb test pairs"),
    (["--train-split", "dev"], r"qrels/dev.tsv: no judgements for split 'dev'; this folder has test, train: pick one "
                               r"with --train-split"),
    (["--retrieval-split", "train"], r"--train-task scifact: 12 of its 'train' query ids .* are also scored"),
])
def test_bad_retrieval_training_input_is_one_line(tiny_model_dir, train_data_dir, tmp_path, capsys, extra, pattern):
    out = tmp_path / "run"
    assert main(retrieval_args(tiny_model_dir, train_data_dir, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err
    assert not out.exists()


def test_no_train_judgements_or_an_empty_corpus_is_one_line(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    data_dir = beir_task_folder(tmp_path / "no-train", tiny_data_dir, "query-id\tcorpus-id\tscore\n")
    assert main(retrieval_args(tiny_model_dir, data_dir, tmp_path / "a")) == 2
    assert "train.tsv: no judgements; the file is empty" in capsys.readouterr().err
    (data_dir / "retrieval/scifact/qrels/train.tsv").unlink()
    assert main(retrieval_args(tiny_model_dir, data_dir, tmp_path / "b", "--retrieval-tasks", "none")) == 2
    assert "no judgements for split 'train'" in capsys.readouterr().err
    write_jsonl(data_dir / "retrieval/scifact/corpus.jsonl", [])
    assert main(retrieval_args(tiny_model_dir, data_dir, tmp_path / "c")) == 2
    assert "corpus.jsonl: no rows; the file is empty" in capsys.readouterr().err


def test_retrieval_options_with_another_objective_are_refused(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    assert main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(tmp_path / "o"), "--hard-negatives", "2"]) == 2
    assert "--hard-negatives is for --objective retrieval or cross-encoder-retrieval, not sts-cosine" in \
        capsys.readouterr().err
