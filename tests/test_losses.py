"""Beyond the paper's loss: CoSENT and AnglE on STSb, MatryoshkaLoss, and scoring at fewer dimensions, on the tiny
model and hand-made vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import train_directly, with_environment

from sbert_repro.cli.main import main
from sbert_repro.data.loaders import RetrievalData, STSPairs, load_sts
from sbert_repro.evaluation import scoring as evaluate
from sbert_repro.evaluation.truncation import truncate_and_normalise
from sbert_repro.runs.records import typed
from sbert_repro.runs.schema import EvaluateRecord

TINY_DIMENSION = 32  # conftest's tiny BERT


def sts_run(model, data_dir, out, *extra: str, retrieval: str = "none") -> dict:
    code = main(["finetune", "--model", str(model), "--data-dir", str(data_dir), "--output-dir", str(out),
                 "--epochs", "6", "--batch-size", "8", "--lr", "3e-3", "--sts-tasks", "stsb",
                 "--retrieval-tasks", retrieval, *extra])
    assert code == 0
    return json.loads((out / "record.json").read_text())


def falls(losses: list[float]) -> bool:
    quarter = len(losses) // 4
    return sum(losses[-quarter:]) / quarter < 0.8 * sum(losses[:quarter]) / quarter


@pytest.mark.parametrize("objective, loss_class, similarity", [("sts-cosent", "CoSENTLoss", "pairwise_cos_sim"),
                                                               ("sts-angle", "AnglELoss", "pairwise_angle_sim")])
def test_each_new_sts_objective_trains_and_its_loss_falls(tiny_model_dir, tiny_data_dir, tmp_path, objective,
                                                          loss_class, similarity):
    train = load_sts("stsb", "train", tiny_data_dir)
    stage, fell = train_directly(tiny_model_dir, tiny_data_dir, tmp_path, objective, train, epochs=6)
    assert stage["objective"] == objective and stage["train_data"].endswith("sts/stsb/train.jsonl")
    # the loss's class and its settings as the library states them (get_config_dict)
    assert stage["epochs"] == 6 and stage["loss"] == {"class": loss_class, "scale": 20.0, "similarity_fct": similarity}
    assert len(stage["loss_history"]) >= 4 and fell, stage["loss_history"]


def test_the_paper_objective_records_no_loss_settings(tiny_model_dir, tiny_data_dir, tmp_path):
    record = sts_run(tiny_model_dir, tiny_data_dir, tmp_path / "cosine", "--epochs", "1")
    assert "loss" not in record["training"]
    assert not any("@" in key for key in record["finetuned"]["scores"])
    assert record["config"]["stsb_objective"] == "sts-cosine" and record["config"]["matryoshka_dims"] == []


def test_matryoshka_wraps_the_loss_and_scores_every_dimension(tiny_model_dir, tiny_data_dir, tmp_path):
    record = sts_run(tiny_model_dir, tiny_data_dir, tmp_path / "m", "--objective", "sts-cosent",
                     "--matryoshka-dims", "32,16,8", retrieval="scifact")
    assert record["training"]["loss"] == {"class": "CoSENTLoss", "scale": 20.0, "similarity_fct": "pairwise_cos_sim",
                                          "matryoshka_dims": [32, 16, 8], "matryoshka_weights": [1.0, 1.0, 1.0],
                                          "n_dims_per_step": -1}
    assert falls([entry["loss"] for entry in record["training"]["loss_history"]])
    for stage in ("baseline", "finetuned"):
        scores, speeds = record[stage]["scores"], record[stage]["speeds"]
        # The full size keeps the plain keys; each smaller dimension gets its own.
        assert {"stsb/spearman", "stsb@16/spearman", "stsb@8/spearman", "scifact@8/ndcg@10"} <= set(scores)
        assert not any(key.startswith(("stsb@32", "scifact@32")) for key in scores)
        assert speeds["scifact/bytes_per_vector"] == 4 * TINY_DIMENSION and speeds["scifact@8/bytes_per_vector"] == 32
        assert speeds["scifact@16/search_queries_per_s"] > 0
    gains = (tmp_path / "m" / "gains.md").read_text()
    assert "| stsb@16 | spearman |" in gains and "| scifact@8 | ndcg@10 |" in gains


def test_matryoshka_wraps_the_retrieval_loss_but_never_the_softmax_classifier(tiny_model_dir):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    from sbert_repro.config.training import TrainConfig
    from sbert_repro.data.retrieval_pairs import RetrievalPairs
    from sbert_repro.train.losses import loss_record, training_set_and_loss, with_matryoshka

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    _, plain = training_set_and_loss("retrieval", model, RetrievalPairs(["q"], ["d"], "test"), TrainConfig())
    wrapped = with_matryoshka(model, plain, "retrieval", (32, 16))
    assert isinstance(wrapped, MatryoshkaLoss) and isinstance(wrapped.loss, MultipleNegativesRankingLoss)
    assert loss_record(wrapped)["loss"]["matryoshka_dims"] == [32, 16]
    assert with_matryoshka(model, plain, "nli-softmax", (32, 16)) is plain
    assert with_matryoshka(model, plain, "retrieval", ()) is plain


def test_nli_then_stsb_with_cosent_records_both_stages(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "two"
    code = main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(out), "--objective", "nli-then-stsb", "--stsb-objective", "sts-cosent", "--nli-task", "snli",
                 "--nli-split", "validation", "--epochs", "1", "--batch-size", "8", "--sts-tasks", "stsb",
                 "--retrieval-tasks", "none"])
    assert code == 0
    record = json.loads((out / "record.json").read_text())
    assert [stage["objective"] for stage in record["training_stages"]] == ["nli-softmax", "sts-cosent"]
    assert "loss" not in record["training_stages"][0]
    assert record["training_stages"][1]["loss"] == {"class": "CoSENTLoss", "scale": 20.0,
                                                    "similarity_fct": "pairwise_cos_sim"}
    assert record["training_stages"][1]["train_data"].endswith("sts/stsb/train.jsonl")
    assert record["training"] == record["training_stages"][-1]
    assert set(record["data"]) >= {"train (nli-softmax)", "train (sts-cosent)"}
    assert (out / "model").is_dir()


# --- vectors cut to fewer dimensions

def test_truncation_keeps_unit_norm_and_the_leading_direction():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 24)).astype(np.float32)
    vectors[3] = 0.0  # a zero row stays zero rather than dividing by zero
    for dim in (1, 8, 24):
        cut = truncate_and_normalise(vectors, dim)
        assert cut.shape == (50, dim) and cut.dtype == np.float32 and cut.flags["C_CONTIGUOUS"]
        norms = np.linalg.norm(np.delete(cut, 3, axis=0), axis=1)
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
        assert not cut[3].any()
        # the same direction as the first `dim` dimensions: a positive multiple of them
        np.testing.assert_allclose(cut[0] * np.linalg.norm(vectors[0, :dim]), vectors[0, :dim], rtol=1e-5)
    with pytest.raises(ValueError):
        truncate_and_normalise(vectors, 25)


class FixedEncoder:
    """Each text's hand-made vector (normalised on request, as SentenceTransformer.encode does)."""

    VECTORS = {"q": [1.0, 0.0, 1.0, 0.0], "a": [0.9, 0.1, 1.0, 0.0], "b": [1.0, 0.0, 0.0, 1.0],
               "c": [0.5, 0.5, 1.0, 0.0]}

    def encode(self, sentences, batch_size, normalize_embeddings, convert_to_numpy, show_progress_bar):
        vectors = np.array([self.VECTORS[s] for s in sentences], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_truncated_vectors_rank_as_their_first_dimensions_say():
    """In 4 dimensions a is nearest q (cos 0.999), then c (0.866), then b (0.5); cut to 2, b's first two are q's
    own (cos 1), ahead of a (0.994) and c (0.707). Gold follows the full vectors, so the cut ones score worse."""
    sts = {"stsb": STSPairs(["q", "q", "q"], ["a", "b", "c"], [5.0, 1.0, 3.0], "hand-made")}
    retrieval = {"scifact": RetrievalData(corpus={name: {"title": "", "text": name} for name in "abc"},
                                          queries={"query": "q"}, qrels={"query": {"a": 1}}, source="hand-made")}
    scores, speeds = evaluate.evaluate_tasks(FixedEncoder(), sts, retrieval, batch_size=4, dims=(2, 4))
    assert scores["stsb/spearman"] == pytest.approx(100.0)
    assert scores["stsb@2/spearman"] == pytest.approx(-50.0)  # ranks b, a, c against gold a, c, b
    assert scores["scifact/ndcg@10"] == pytest.approx(100.0) and scores["scifact/mrr@10"] == pytest.approx(100.0)
    assert scores["scifact@2/ndcg@10"] == pytest.approx(100 / np.log2(3))  # a, second behind b
    assert scores["scifact@2/mrr@10"] == pytest.approx(50.0)
    assert "stsb@4/spearman" not in scores  # the full size: the plain keys
    assert speeds["scifact@2/bytes_per_vector"] == 8 and speeds["scifact/bytes_per_vector"] == 16
    plain, plain_speeds = evaluate.evaluate_tasks(FixedEncoder(), sts, retrieval, batch_size=4)
    assert plain == {key: value for key, value in scores.items() if "@" not in key.split("/")[0]}
    assert "scifact/bytes_per_vector" not in plain_speeds  # records without --dims keep their shape


def test_evaluate_dims_through_the_cli(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "e"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(out), "--sts-tasks", "stsb", "--retrieval-tasks", "scifact", "--dims", "8,16"]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["eval_dims"] == [8, 16]
    assert {"stsb@8/spearman", "stsb@16/pearson", "scifact@8/ndcg@10", "scifact@16/recall@100"} <= set(
        record["scores"])
    assert "| scifact@8 | ndcg@10 |" in (out / "scores.md").read_text()


# --- bad input: one line, exit 2, nothing written

@pytest.mark.parametrize("command, option, value, expected", [
    ("finetune", "--matryoshka-dims", "16,32", "--matryoshka-dims: 16,32 is not strictly decreasing"),
    ("finetune", "--matryoshka-dims", "32,16,16", "--matryoshka-dims: 32,16,16 is not strictly decreasing"),
    ("finetune", "--matryoshka-dims", "", "--matryoshka-dims: '' names no dimension"),
    ("finetune", "--matryoshka-dims", " , ", "--matryoshka-dims: ' , ' names no dimension"),
    ("finetune", "--matryoshka-dims", "32,sixteen", "--matryoshka-dims: '32,sixteen' is not a comma-separated list"),
    ("finetune", "--matryoshka-dims", "32.5,16", "is not a comma-separated list of integers"),
    ("finetune", "--matryoshka-dims", "32,0", "--matryoshka-dims: dimensions must be positive integers"),
    ("finetune", "--matryoshka-dims", "64,32", "--matryoshka-dims: 64 is larger than the model's 32 dimensions"),
    ("evaluate", "--dims", "", "--dims: '' names no dimension"),
    ("evaluate", "--dims", "8,x", "--dims: '8,x' is not a comma-separated list of integers"),
    ("evaluate", "--dims", "8,8", "--dims: 8,8 repeats a dimension"),
    ("evaluate", "--dims", "-8", "--dims: dimensions must be positive integers"),
    ("evaluate", "--dims", "8,48", "--dims: 48 is larger than the model's 32 dimensions"),
])
def test_bad_dims_are_one_line(tiny_model_dir, tiny_data_dir, tmp_path, capsys, command, option, value, expected):
    out = tmp_path / "run"
    code = main([command, "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(out), "--sts-tasks", "stsb", "--retrieval-tasks", "none", f"{option}={value}"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    # (transformers' own "Loading weights" bar precedes a check made once the model is built)
    assert len([line for line in err.strip().splitlines() if not line.startswith("Loading weights")]) == 1, err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("args, expected", [
    (["--stsb-objective", "sts-cosent"], "--stsb-objective is for --objective nli-then-stsb, not sts-cosine"),
    (["--objective", "nli-mnrl", "--matryoshka-dims", "32,16"], "--matryoshka-dims is for the STS objectives"),
    (["--stsb-objective", "sts-l1"], "--stsb-objective: unknown objective 'sts-l1'; choose from sts-cosine"),
])
def test_loss_options_that_do_not_fit_the_objective(tiny_model_dir, tmp_path, capsys, args, expected):
    try:
        code = main(["finetune", "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "o"), *args])
    except SystemExit as stop:  # argparse's own checks exit from the parser
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_the_results_page_sets_each_cut_dimension_beside_the_full_size():
    from sbert_repro.report.dimension_table import dimension_table

    def record(scores: dict[str, float]) -> EvaluateRecord:
        return typed(with_environment({
            "kind": "evaluate", "config": {"model": "org/model"}, "scores": scores,
            "speeds": {"scifact/bytes_per_vector": 1536.0, "scifact@128/bytes_per_vector": 512.0}})).at("cut")

    cut = record({"stsb/spearman": 80.0, "stsb@128/spearman": 76.0, "stsb@64/spearman": 60.0})
    rows = [line for line in dimension_table([cut]) if line.startswith("| `org/model`")]
    assert [row.split(" | ")[1:3] for row in rows] == [["full", "80.00"], ["128", "76.00 (95.0%)"],
                                                       ["64", "60.00 (75.0%)"]]
    assert rows[0].split(" | ")[5] == "1536" and rows[1].split(" | ")[5] == "512" and rows[2].split(" | ")[5] == "-"
    assert dimension_table([record({"stsb/spearman": 80.0})]) == []  # nothing cut: no section
