"""One configuration per command, resolved where it is declared: a config built in Python is the command line's."""

from __future__ import annotations

from pathlib import Path

import pytest

import sbert_repro
from sbert_repro.cli.main import config_from_args
from sbert_repro.cli.options import build_parser
from sbert_repro.config.objectives import OBJECTIVES
from sbert_repro.config.training import PAPER_RECIPE, TrainConfig
from sbert_repro.data.tasks import DEFAULT_RETRIEVAL_TASKS, TABLE1_STS_TASKS


def cli_config(*options: str) -> TrainConfig:
    argv = ["finetune", "--output-dir", "runs/x", *options]
    return config_from_args(build_parser("sbert-repro").parse_args(argv), argv[1:])


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_config_built_in_python_equals_the_command_lines(objective):
    assert TrainConfig(objective=objective, output_dir=Path("runs/x")) == cli_config("--objective", objective)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_options_given_win_over_the_objectives_defaults_in_python_and_on_the_command_line(objective):
    given = {"epochs": 2, "batch_size": 8, "max_seq_length": 64}
    python = TrainConfig(objective=objective, output_dir=Path("runs/x"), **given)
    assert python == cli_config("--objective", objective, "--epochs", "2", "--batch-size", "8",
                                "--max-seq-length", "64")
    assert (python.epochs, python.batch_size, python.max_seq_length) == (2, 8, 64)
    assert not {"epochs", "batch_size", "max_seq_length"} & set(python.defaulted)


def test_the_retrieval_objective_has_its_recipe_and_the_default_has_the_papers():
    retrieval = TrainConfig(objective="retrieval")
    assert (retrieval.batch_size, retrieval.max_seq_length, retrieval.epochs) == (64, 256, 3)
    assert retrieval.sts_tasks == TABLE1_STS_TASKS and retrieval.retrieval_tasks == DEFAULT_RETRIEVAL_TASKS
    paper = TrainConfig()
    assert {key: getattr(paper, key) for key in PAPER_RECIPE} == PAPER_RECIPE
    assert set(paper.defaulted) == set(PAPER_RECIPE)
    assert "defaulted" not in paper.to_dict() and paper.to_dict()["batch_size"] == 16


def test_a_reranker_is_scored_on_its_own_training_tasks_search():
    reranker = TrainConfig(objective="cross-encoder-retrieval", train_task="nfcorpus")
    assert reranker.retrieval_tasks == ("nfcorpus",) and reranker.sts_tasks == ()
    assert (reranker.hard_negatives, reranker.rerank_top_k, reranker.epochs) == (3, 100, 1)


def test_a_resolved_config_survives_a_replace_unchanged():
    from dataclasses import replace

    config = TrainConfig(objective="retrieval", seeds=(42, 43))
    again = replace(config, seed=43)
    assert again.batch_size == 64 and again.defaulted == config.defaulted


def test_the_python_api_names_the_commands_and_their_configs():
    from sbert_repro import EvaluateConfig, evaluate, finetune
    from sbert_repro import TrainConfig as Public
    from sbert_repro.pipeline.evaluate_run import evaluate as evaluate_command
    from sbert_repro.pipeline.finetune_run import finetune as finetune_command

    assert Public is TrainConfig and EvaluateConfig().model == "bert-base-uncased"
    assert evaluate is evaluate_command and finetune is finetune_command
    with pytest.raises(AttributeError, match="no attribute 'pipeline_stages'"):
        sbert_repro.pipeline_stages  # noqa: B018
