"""SBERT-NLI: the softmax and ranking objectives and the two-stage NLI -> STSb recipe, on the tiny model."""

from __future__ import annotations

import json

import pytest
from conftest import train_directly, write_jsonl

from sbert_repro.cli.main import main
from sbert_repro.data import loaders as data
from sbert_repro.data import sources
from sbert_repro.errors import UsageError


def nli_run(model, data_dir, out, *extra: str) -> dict:
    code = main(["finetune", "--model", str(model), "--data-dir", str(data_dir), "--output-dir", str(out),
                 "--nli-task", "snli", "--nli-split", "validation", "--nli-epochs", "8", "--epochs", "2",
                 "--batch-size", "8", "--lr", "3e-3", "--sts-tasks", "stsb", "--retrieval-tasks", "none", *extra])
    assert code == 0
    return json.loads((out / "record.json").read_text())


@pytest.mark.parametrize("objective", ["nli-softmax", "nli-mnrl"])
def test_each_nli_objective_trains_and_its_loss_falls(tiny_model_dir, tiny_data_dir, tmp_path, objective):
    train = data.load_nli("snli", "validation", tiny_data_dir)
    stage, fell = train_directly(tiny_model_dir, tiny_data_dir, tmp_path, objective, train, nli_epochs=8)
    assert stage["objective"] == objective and stage["train_data"].endswith("nli/snli/validation.jsonl")
    assert stage["epochs"] == 8
    assert len(stage["loss_history"]) >= 4 and fell, stage["loss_history"]


def test_two_stages_record_both(tiny_model_dir, tiny_data_dir, tmp_path):
    record = nli_run(tiny_model_dir, tiny_data_dir, tmp_path / "two", "--objective", "nli-then-stsb")
    assert [stage["objective"] for stage in record["training_stages"]] == ["nli-softmax", "sts-cosine"]
    assert record["training_stages"][0]["train_data"].endswith("nli/snli/validation.jsonl")
    assert record["training_stages"][1]["train_data"].endswith("sts/stsb/train.jsonl")
    assert record["training_stages"][1]["epochs"] == 2
    assert record["training"] == record["training_stages"][-1]
    assert set(record["data"]) >= {"train (nli-softmax)", "train (sts-cosine)"}


@pytest.mark.parametrize("concat, width", [("u,v", 2), ("|u-v|", 1), ("u*v", 1), ("u,v,|u-v|,u*v", 4)])
def test_concatenation_is_one_option_away(tiny_model_dir, concat, width):
    from sentence_transformers import SentenceTransformer

    from sbert_repro.config.training import TrainConfig
    from sbert_repro.train.losses import training_set_and_loss

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    pairs = data.NLIPairs(["a cat"], ["a dog"], [0], "test")
    _, loss = training_set_and_loss("nli-softmax", model, pairs, TrainConfig(concat=concat))
    assert loss.classifier.in_features == width * model.get_sentence_embedding_dimension()


def test_ranking_objective_builds_triplets_with_contradictions_as_hard_negatives(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    from sbert_repro.config.training import TrainConfig
    from sbert_repro.train.losses import training_set_and_loss

    pairs = data.NLIPairs(premises=["p1", "p1", "p1", "p2", "p2"], hypotheses=["e1", "n1", "c1", "e2", "n2"],
                          labels=[0, 1, 2, 0, 1], source="test")
    datasets, _ = training_set_and_loss("nli-mnrl", SentenceTransformer(str(tiny_model_dir), device="cpu"), pairs,
                                        TrainConfig())
    assert datasets["triplets"].to_dict() == {"anchor": ["p1"], "positive": ["e1"], "negative": ["c1"]}
    assert datasets["pairs"].to_dict() == {"anchor": ["p2"], "positive": ["e2"]}


def test_nli_labels_by_name_or_id_and_unlabelled_pairs_skipped(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "nli/snli/test.jsonl", [
        {"premise": "a", "hypothesis": "b", "label": "contradiction"},
        {"premise": "a", "hypothesis": "c", "label": "-"},
        {"premise": "a", "hypothesis": "d", "label": 1}])
    loaded = data.load_nli("snli", "test", tmp_path)
    assert loaded.labels == [2, 1] and loaded.hypotheses == ["b", "d"]
    monkeypatch.setattr(sources, "load_split", lambda *args: [{"premise": "a", "hypothesis": "b", "label": -1},
                                                          {"premise": "a", "hypothesis": "c", "label": 0}])
    assert data.load_nli("allnli", "train", None).labels == [0]


@pytest.mark.parametrize("label", ["maybe", 3, True, None])
def test_a_bad_nli_label_names_the_row(tmp_path, label):
    write_jsonl(tmp_path / "nli/snli/test.jsonl", [{"premise": "a", "hypothesis": "b", "label": label}])
    with pytest.raises(UsageError, match="test.jsonl:1: label .* is not one of entailment, neutral, contradiction"):
        data.load_nli("snli", "test", tmp_path)


def test_unknown_nli_split_through_the_cli(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    code = main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(tmp_path / "o"), "--objective", "nli-softmax", "--nli-task", "snli", "--nli-split", "dev"])
    assert code == 2 and "--nli-split: snli has no 'dev' split" in capsys.readouterr().err
