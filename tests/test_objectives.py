"""The objective registry (config/objectives.py): an unknown name is refused in one line, every objective builds the
loss and reads the data it declares, and the registry says what the objectives did before it carried their
behaviour."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
from test_retrieval_training import beir_task_folder

from sbert_repro.cli.main import main
from sbert_repro.config.objectives import (
    CROSS_ENCODER_OBJECTIVES,
    NLI_DATA,
    OBJECTIVE_DEFAULTS,
    OBJECTIVE_REGISTRY,
    OBJECTIVE_STAGES,
    OBJECTIVES,
    RETRIEVAL_TRAINING_OBJECTIVES,
    STS_OBJECTIVES,
    DataKind,
    get_objective,
    training_stages,
)
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import NLIPairs, STSPairs
from sbert_repro.data.retrieval_pairs import RetrievalPairs
from sbert_repro.errors import UsageError

SINGLE_STAGES = [name for name, objective in OBJECTIVE_REGISTRY.items() if objective.stages == (name,)]


# ----------------------------------------------------------------------------- an unknown name

@pytest.mark.parametrize("refuse", [lambda: get_objective("sts-l2"), lambda: training_stages("sts-l2"),
                                    lambda: TrainConfig(objective="sts-l2")])
def test_an_unknown_objective_is_refused_in_one_line_naming_every_valid_one(refuse):
    with pytest.raises(UsageError) as refused:
        refuse()
    message = str(refused.value)
    assert "\n" not in message and message.startswith("--objective: unknown objective 'sts-l2'; choose from ")
    assert message.removeprefix("--objective: unknown objective 'sts-l2'; choose from ").split(", ") == list(OBJECTIVES)


def test_an_unknown_objective_on_the_command_line_is_one_line_and_exit_2(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                          capsys):
    out = tmp_path / "run"
    code = main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(out), "--objective", "nli-sofmax"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "unknown objective 'nli-sofmax'" in err, err
    assert all(name in err for name in OBJECTIVES) and not out.exists()


# ----------------------------------------------------------------------------- the registry's own consistency

def test_every_stage_is_a_single_stage_objective_that_declares_its_data_loss_and_validation():
    kinds = set(typing.get_args(DataKind))
    for name, objective in OBJECTIVE_REGISTRY.items():
        assert objective.name == name and objective.label
        for stage in objective.stages:
            declared = OBJECTIVE_REGISTRY[stage]
            assert declared.stages == (stage,) and declared.train_data in kinds, (name, stage)
            assert declared.loss and declared.validation
        assert set(objective.sections) <= {"retrieval_training", "finetuned_is"}
        assert set(objective.defaults) <= set(TrainConfig.__dataclass_fields__)


def test_every_kind_of_data_has_its_loader_and_its_rows():
    from sbert_repro.pipeline.finetune_data import PAIR_LOADERS
    from sbert_repro.train.losses import ROWS

    kinds = set(typing.get_args(DataKind))
    assert set(PAIR_LOADERS) | {"retrieval-judgements"} == kinds and set(ROWS) == kinds


# The objectives the registry was written for, and the tables their behaviour was once spread over.
KNOWN = ("sts-cosine", "nli-softmax", "nli-mnrl", "nli-then-stsb", "retrieval", "sts-cosent", "sts-angle",
         "cross-encoder", "cross-encoder-retrieval")


def known(names) -> tuple[str, ...]:
    """`names` among KNOWN, in their order: an objective added later leaves these checks as they are."""
    return tuple(name for name in names if name in KNOWN)


def test_the_registry_says_what_each_objective_did_before_it_carried_their_behaviour():
    assert known(OBJECTIVES) == KNOWN  # in the order --objective lists them
    assert {name: OBJECTIVE_STAGES[name] for name in KNOWN} == {
        "sts-cosine": ("sts-cosine",), "nli-softmax": ("nli-softmax",), "nli-mnrl": ("nli-mnrl",),
        "nli-then-stsb": ("nli-softmax", "sts-cosine"), "retrieval": ("retrieval",), "sts-cosent": ("sts-cosent",),
        "sts-angle": ("sts-angle",), "cross-encoder": ("cross-encoder",),
        "cross-encoder-retrieval": ("cross-encoder-retrieval",)}
    assert known(STS_OBJECTIVES) == ("sts-cosine", "sts-cosent", "sts-angle")
    assert known(CROSS_ENCODER_OBJECTIVES) == ("cross-encoder", "cross-encoder-retrieval")
    assert known(RETRIEVAL_TRAINING_OBJECTIVES) == ("retrieval", "cross-encoder-retrieval")
    assert {name: OBJECTIVE_DEFAULTS[name] for name in known(OBJECTIVE_DEFAULTS)} == {
        "retrieval": {"batch_size": 64, "max_seq_length": 256, "epochs": 3},
        "cross-encoder": {"retrieval_tasks": ()},
        "cross-encoder-retrieval": {"max_seq_length": 256, "epochs": 1, "hard_negatives": 3, "rerank_top_k": 100,
                                    "sts_tasks": ()}}
    objectives = {name: OBJECTIVE_REGISTRY[name] for name in KNOWN}

    def having(flag: str) -> set[str]:
        return {name for name, objective in objectives.items() if getattr(objective, flag)}

    assert having("matryoshka") == {"sts-cosine", "sts-cosent", "sts-angle", "retrieval"}
    assert having("records_loss") == {"sts-cosent", "sts-angle"}
    assert having("no_duplicate_batches") == {"retrieval"}
    assert {name: objective.loss for name, objective in objectives.items() if objective.loss} == {
        "sts-cosine": "CosineSimilarityLoss", "nli-softmax": "SoftmaxLoss", "nli-mnrl": "MultipleNegativesRankingLoss",
        "retrieval": "MultipleNegativesRankingLoss", "sts-cosent": "CoSENTLoss", "sts-angle": "AnglELoss",
        "cross-encoder": "BinaryCrossEntropyLoss", "cross-encoder-retrieval": "BinaryCrossEntropyLoss"}
    assert {name for name, objective in objectives.items() if objective.validation == "held-out-queries"} == {
        "retrieval", "cross-encoder-retrieval"}
    assert {name: objective.scoring for name, objective in objectives.items() if objective.scoring != "embeddings"} \
        == {"cross-encoder": "pair-scores", "cross-encoder-retrieval": "reranked-search"}
    assert {name: objective.sections for name, objective in objectives.items() if objective.sections} == {
        "retrieval": ("retrieval_training",), "cross-encoder-retrieval": ("finetuned_is", "retrieval_training")}
    # trained for --nli-epochs: the stages whose names began with "nli"
    assert {name for name, objective in objectives.items() if objective.train_data in NLI_DATA} == {
        "nli-softmax", "nli-mnrl"}
    assert [get_objective(name).trains_on for name in ("nli-then-stsb", "nli-mnrl")] == [
        ("nli-pairs", "sts-pairs"), ("nli-triplets",)]
    assert training_stages("nli-then-stsb", "sts-angle") == ("nli-softmax", "sts-angle")
    assert training_stages("sts-cosine", "sts-angle") == ("sts-cosine",)


def test_a_registry_entry_of_one_stage_must_declare_what_it_trains_on():
    from sbert_repro.config.objectives import Objective

    with pytest.raises(ValueError, match="a single stage declares its training data, loss and validation"):
        Objective("sts-l1", "L1 loss", "sts-pairs", None, "stsb-validation")


# ----------------------------------------------------------------------------- each objective's loss and data

def stage_data(kind: str) -> STSPairs | NLIPairs | RetrievalPairs:
    """A few rows of `kind`, as the loaders give them."""
    if kind == "sts-pairs":
        return STSPairs(["a cat", "a dog"], ["a cat sat", "a car"], [5.0, 1.0], "hand-made")
    if kind.startswith("nli"):
        return NLIPairs(["p", "p", "p"], ["e", "n", "c"], [0, 1, 2], "hand-made")
    return RetrievalPairs(["q1", "q2"], ["d1", "d2"], "hand-made", negatives=[["d2"], ["d1"]])


@pytest.mark.parametrize("name", SINGLE_STAGES)
def test_every_objective_builds_the_loss_it_declares(tiny_model_dir, name):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    from sbert_repro.model.cross_encoder import new_cross_encoder
    from sbert_repro.train.losses import build_loss, loss_entry, loss_record, training_set_and_loss, with_matryoshka

    objective = get_objective(name)
    config = TrainConfig(objective=name, device="cpu")
    if objective.cross_encoder:
        loss = build_loss(name, new_cross_encoder(str(tiny_model_dir), "cpu"), config)
    else:
        model = SentenceTransformer(str(tiny_model_dir), device="cpu")
        rows, loss = training_set_and_loss(name, model, stage_data(str(objective.train_data)), config)
        assert len(rows) > 0
        wrapped = with_matryoshka(model, loss, name, (32, 16))
        assert isinstance(wrapped, MatryoshkaLoss) == objective.matryoshka
        assert ("loss" in loss_record(loss, name)) == objective.records_loss
    assert type(loss).__name__ == objective.loss
    entry = loss_entry(loss)
    assert entry["class"] == objective.loss and json.loads(json.dumps(entry)) == entry
    assert {key: entry[key] for key in loss.get_config_dict()} == json.loads(json.dumps(loss.get_config_dict()))


def test_a_recorded_loss_keeps_its_class_and_library_settings(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    from sbert_repro.train.losses import build_loss, loss_record, with_matryoshka

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    cosent = build_loss("sts-cosent", model, TrainConfig())
    assert loss_record(cosent, "sts-cosent") == {"loss": {"class": "CoSENTLoss", "scale": 20.0,
                                                          "similarity_fct": "pairwise_cos_sim"}}
    assert loss_record(build_loss("sts-cosine", model, TrainConfig()), "sts-cosine") == {}
    wrapped = loss_record(with_matryoshka(model, build_loss("sts-cosine", model, TrainConfig()), "sts-cosine", (8,)))
    assert wrapped["loss"]["class"] == "CosineSimilarityLoss" and wrapped["loss"]["matryoshka_dims"] == [8]
    assert wrapped["loss"]["matryoshka_weights"] == [1.0]


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_reads_the_training_data_it_declares(tiny_data_dir, tmp_path, name):
    """What finetune loads for each stage follows the registry's data kind (nothing unrecognised is read as NLI)."""
    from sbert_repro.pipeline.finetune_data import load_finetune_data

    objective = get_objective(name)
    # a re-ranker is scored on its training task's search (TrainConfig's own default), and without STS tasks
    options = {"sts_tasks": ("stsb",)} | ({} if objective.scoring == "reranked-search" else {"retrieval_tasks": ()})
    config = TrainConfig(objective=name, data_dir=beir_task_folder(tmp_path, tiny_data_dir, None),
                         nli_task="snli", nli_split="validation", output_dir=tmp_path / "run",
                         **{key: value for key, value in options.items() if key not in objective.defaults})
    data = load_finetune_data(config)
    expected = {"sts-pairs": (STSPairs, "sts/stsb/train.jsonl"), "nli-pairs": (NLIPairs, "nli/snli/validation.jsonl"),
                "nli-triplets": (NLIPairs, "nli/snli/validation.jsonl"),
                "retrieval-judgements": (RetrievalPairs, "scifact")}
    assert list(data.train_sets) == list(training_stages(name))
    for stage, train in data.train_sets.items():
        kind, source = expected[str(get_objective(stage).train_data)]
        assert isinstance(train, kind) and source in Path(train.source).as_posix(), (stage, train.source)
    assert (data.retrieval_training is not None) == ("retrieval_training" in objective.sections)
