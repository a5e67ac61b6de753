"""`sbert-repro geometry`, `evaluate --postprocess` (and --fit-on), `index --postprocess` and `search` on a tiny model:
records against measures recomputed by hand from the model's own vectors, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_jsonl
from scipy.stats import spearmanr

from sbert_repro.analysis import geometry
from sbert_repro.cli.main import main
from sbert_repro.data.loaders import load_sts
from sbert_repro.model import transforms
from sbert_repro.model.encoder import build_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return build_model(str(tiny_model_dir), "mean", "cpu")


def vectors_of(model, sentences: list[str]) -> np.ndarray:
    """The model's vectors as the commands encode them (batches of 64, not normalised): the tiny data's cosines
    nearly tie, and whitening would turn the last bits of other batches into other ranks."""
    return model.encode(sentences, batch_size=64, convert_to_numpy=True)


def run_geometry(tmp_path: Path, data_dir: Path, *options: str) -> int:
    return main(["geometry", "--data-dir", str(data_dir), "--device", "cpu", "--output-dir", str(tmp_path / "g"),
                 "--sample", "40", "--pairs", "500", *options])


def test_geometry_measures_what_the_vectors_hold(tiny_model_dir, tiny_data_dir, tiny, tmp_path, capsys):
    assert run_geometry(tmp_path, tiny_data_dir, "--model", str(tiny_model_dir),
                        "--random-weights", str(tiny_model_dir)) == 0
    record = json.loads((tmp_path / "g" / "record.json").read_text())
    assert record["kind"] == "geometry" and record["status"] == "complete"
    assert [m["role"] for m in record["models"]] == ["given", "random weights"]
    assert record["models"][1]["model"].endswith("shape, random weights")
    assert "| given |" in capsys.readouterr().out

    # The same sample, drawn again: the measures recomputed from the model's own vectors.
    pool = list(dict.fromkeys(s for task in ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
                              for pairs in [load_sts(task, "test", tiny_data_dir)]
                              for s in pairs.sentences1 + pairs.sentences2))
    rows = np.sort(np.random.default_rng(0).choice(len(pool), 40, replace=False))
    vectors = tiny.encode([pool[row] for row in rows], convert_to_numpy=True)
    measured = record["models"][0]
    assert record["sentences"] == {"from": "the test sentences of sts12, sts13, sts14, sts15, sts16, stsb, sickr",
                                   "distinct": len(pool), "sampled": 40}
    assert measured["anisotropy"]["mean_cosine"] == pytest.approx(
        geometry.anisotropy(vectors, 500, 0).mean_cosine, abs=1e-5)
    assert measured["spectrum"]["effective_rank"] == pytest.approx(geometry.spectrum(vectors).effective_rank, rel=1e-4)
    assert len(measured["eigenvalues"]) == measured["dimension"] == 32
    assert sum(measured["histograms"]["random_pairs"]) == 500
    gold = load_sts("stsb", "test", tiny_data_dir)
    assert sum(map(sum, measured["histograms"]["gold_bins"])) == len(gold) == record["gold_pairs"]["pairs"]
    assert [b["count"] for b in measured["gold_bins"]["bins"]] == [
        sum(1 for score in gold.scores if low <= score < high or (high == 5 and score == 5))
        for low, high in zip(range(5), range(1, 6), strict=True)]
    # Random weights fill a narrower cone than this tiny model, which was also never trained.
    assert record["models"][1]["anisotropy"]["mean_cosine"] > 0.5


def test_geometry_of_a_run_measures_its_raw_and_fine_tuned_model(tiny_model_dir, tiny_data_dir, tmp_path):
    run = tmp_path / "ft"
    assert main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(run), "--device", "cpu", "--epochs", "1", "--sts-tasks", "stsb", "--retrieval-tasks", "none"]) == 0
    assert run_geometry(tmp_path, tiny_data_dir, "--run", str(run), "--sts-tasks", "stsb") == 0
    models = json.loads((tmp_path / "g" / "record.json").read_text())["models"]
    assert [(m["role"], m["run"], m["objective"], m["seed"]) for m in models] == [
        ("raw", "ft", None, None), ("fine-tuned", "ft", "sts-cosine", 42)]
    assert models[1]["model"] == "ft/model"
    assert models[0]["anisotropy"] != models[1]["anisotropy"]


def postprocessed_spearman(model, pairs, transform: transforms.Transform) -> float:
    unique = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    vectors = transforms.apply_and_normalise(transform, vectors_of(model, unique))
    row = {sentence: i for i, sentence in enumerate(unique)}
    # in float64, as the commands score: in float32, near-tied cosines of the tiny data would tie or not by chance
    u, v = (vectors[[row[s] for s in side]].astype(np.float64) for side in (pairs.sentences1, pairs.sentences2))
    cosines = np.einsum("ij,ij->i", u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return 100 * spearmanr(cosines, pairs.scores).statistic


def evaluate(tiny_model_dir: Path, data_dir: Path, output: Path, *options: str) -> int:
    return main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(data_dir), "--device", "cpu",
                 "--output-dir", str(output), "--sts-tasks", "stsb,sickr", *options])


def test_evaluate_postprocess_fits_each_task_on_its_own_sentences(tiny_model_dir, tiny_data_dir, tiny, tmp_path):
    assert evaluate(tiny_model_dir, tiny_data_dir, tmp_path / "e", "--postprocess", "whiten-8") == 0
    record = json.loads((tmp_path / "e" / "record.json").read_text())
    assert record["config"]["postprocess"] == "whiten-8" and record["config"]["fit_on"] is None
    assert set(record["postprocess"]["fitted_on"]) == {"stsb", "sickr", "scifact", "stsb-retrieval"}
    assert record["postprocess"]["fitted_on"]["scifact"].endswith("corpus documents")
    stsb = load_sts("stsb", "test", tiny_data_dir)
    unique = list(dict.fromkeys(stsb.sentences1 + stsb.sentences2))
    assert record["postprocess"]["fitted_on"]["stsb"] == f"its own {len(unique)} test sentences"
    # The saved transform is the one fitted on STSb test's vectors, and it gives the recorded score.
    saved = transforms.load_transform(tmp_path / "e" / record["postprocess"]["files"]["stsb"], "--postprocess")
    fitted = transforms.fit_postprocess("whiten-8", vectors_of(tiny, unique))
    np.testing.assert_allclose(saved.projection, fitted.projection, rtol=1e-4, atol=1e-6)
    assert record["scores"]["stsb/spearman"] == pytest.approx(postprocessed_spearman(tiny, stsb, saved), abs=1e-6)
    as_given = transforms.Transform("none", np.zeros(32), np.eye(32))
    assert record["scores"]["stsb/spearman"] != pytest.approx(postprocessed_spearman(tiny, stsb, as_given), abs=1e-3)


def test_evaluate_fit_on_fits_one_transform_for_every_task(tiny_model_dir, tiny_data_dir, tiny, tmp_path):
    lines = [f"a sentence about the {word}" for word in ("cat", "dog", "horse", "boat", "snow", "car")]
    fit_file = tmp_path / "fit.txt"
    fit_file.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    assert evaluate(tiny_model_dir, tiny_data_dir, tmp_path / "e", "--postprocess", "center", "--fit-on",
                    str(fit_file), "--retrieval-tasks", "none") == 0
    record = json.loads((tmp_path / "e" / "record.json").read_text())
    [fitted_on] = set(record["postprocess"]["fitted_on"].values())  # one transform, for both tasks
    assert fitted_on.endswith("fit.txt: 6 sentences") and str(tmp_path) not in fitted_on
    center = transforms.fit_postprocess("center", vectors_of(tiny, lines))
    for task in ("stsb", "sickr"):
        assert record["scores"][f"{task}/spearman"] == pytest.approx(
            postprocessed_spearman(tiny, load_sts(task, "test", tiny_data_dir), center), abs=1e-5)


def test_an_index_built_with_a_transform_applies_it_to_the_queries(tiny_model_dir, tiny_data_dir, tiny, tmp_path,
                                                                   capsys):
    texts = [f"we like the {word}" for word in ("cat", "dog", "horse", "boat", "snow", "car", "train", "tree")]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    transform = transforms.fit_postprocess("abtt-1", vectors_of(tiny, texts))
    transforms.save_transform(transform, tmp_path / "t.npz")
    assert main(["index", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--output-dir",
                 str(tmp_path / "idx"), "--device", "cpu", "--postprocess", str(tmp_path / "t.npz")]) == 0
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["postprocess"]["option"] == "abtt-1"
    capsys.readouterr()
    assert main(["search", "--index-dir", str(tmp_path / "idx"), "--json", "--top-k", "3", "--device", "cpu",
                 "the horse"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    documents = transforms.apply_and_normalise(transform, vectors_of(tiny, texts))
    query = transforms.apply_and_normalise(transform, vectors_of(tiny, ["the horse"]))[0]
    expected = np.argsort(-(documents @ query), kind="stable")[:3]
    assert [hit["id"] for hit in hits] == [f"d{row}" for row in expected]
    np.testing.assert_allclose([hit["score"] for hit in hits], (documents @ query)[expected], atol=1e-5)


def test_finetune_postprocesses_the_baseline_only(tiny_model_dir, tiny_data_dir, tmp_path):
    options = ["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--device", "cpu",
               "--epochs", "1", "--max-train-samples", "16", "--sts-tasks", "stsb", "--retrieval-tasks", "none"]
    assert main([*options, "--output-dir", str(tmp_path / "plain")]) == 0
    assert main([*options, "--output-dir", str(tmp_path / "centered"), "--postprocess", "center"]) == 0
    plain, centered = (json.loads((tmp_path / name / "record.json").read_text()) for name in ("plain", "centered"))
    assert centered["baseline"]["postprocess"]["option"] == "center"
    assert (tmp_path / "centered" / "postprocess" / "stsb.npz").is_file()
    before = plain["baseline"]["scores"]["stsb/spearman"]
    assert centered["baseline"]["scores"]["stsb/spearman"] != pytest.approx(before)
    assert centered["finetuned"]["scores"] == pytest.approx(plain["finetuned"]["scores"])


@pytest.mark.parametrize(("command", "extra", "expected"), [
    ("evaluate", ["--postprocess", "whiten-0"], "K must be a positive integer"),
    ("evaluate", ["--postprocess", "whiten-64"], "K = 64 is larger than the dimension 32"),
    ("evaluate", ["--postprocess", "abtt-32"], "D = 32 must be below the dimension 32"),
    ("evaluate", ["--postprocess", "sphere"], "unknown; give center, whiten"),
    ("evaluate", ["--fit-on", "x.txt"], "no --postprocess is given"),
    ("evaluate", ["--postprocess", "center", "--dims", "16"], "--dims with --postprocess"),
    ("evaluate", ["--postprocess", "center", "--fit-on", "missing.txt"], "--fit-on missing.txt: cannot read"),
    ("geometry", [], "nothing to measure"),
    ("geometry", ["--model", "M", "--sample", "1"], "--sample must be at least 2"),
])
def test_bad_postprocess_and_geometry_options(command, extra, expected, tiny_model_dir, tiny_data_dir, tmp_path,
                                              capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = [] if command == "geometry" else ["--model", str(tiny_model_dir), "--retrieval-tasks", "none"]
    assert main([command, *model, "--data-dir", str(tiny_data_dir), "--device", "cpu", "--output-dir",
                 str(tmp_path / "out"), *extra]) == 2
    error = capsys.readouterr().err  # (a model's loading bar may stand before it)
    assert expected in error.strip().splitlines()[-1] and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_one_sentence_to_measure_is_one_line(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    (tmp_path / "one.txt").write_text("just one sentence\n\n", encoding="utf-8")
    assert run_geometry(tmp_path, tiny_data_dir, "--model", str(tiny_model_dir), "--sentences",
                        str(tmp_path / "one.txt")) == 2
    error = capsys.readouterr().err
    assert "--sentences" in error.strip().splitlines()[-1] and "at least 2 sentences" in error
    assert "Traceback" not in error
    assert not (tmp_path / "g").exists()


def test_a_transform_of_another_dimension_is_refused_by_index(tiny_model_dir, tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d0", "text": "the cat"}, {"_id": "d1", "text": "a dog"}])
    transforms.save_transform(transforms.fit_postprocess("center", np.random.default_rng(0).normal(size=(5, 8))),
                            tmp_path / "t.npz")
    assert main(["index", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--output-dir",
                 str(tmp_path / "idx"), "--device", "cpu", "--postprocess", str(tmp_path / "t.npz")]) == 2
    assert "fitted on 8-dimensional vectors" in capsys.readouterr().err
    (tmp_path / "junk.npz").write_bytes(b"not numpy")
    assert main(["index", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--output-dir",
                 str(tmp_path / "idx2"), "--device", "cpu", "--postprocess", str(tmp_path / "junk.npz")]) == 2
    assert "not a transform saved by `evaluate --postprocess`" in capsys.readouterr().err


def test_a_model_whose_vectors_are_not_numbers_is_one_line(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    """NaN weights give NaN vectors, which no SVD converges on: the encode stops first, naming the row."""
    import shutil

    from safetensors.torch import load_file, save_file

    damaged = Path(shutil.copytree(tiny_model_dir, tmp_path / "damaged"))
    weights = load_file(damaged / "model.safetensors")
    name = next(name for name in weights if name.endswith("word_embeddings.weight"))
    weights[name][:] = float("nan")
    save_file(weights, damaged / "model.safetensors", metadata={"format": "pt"})
    assert run_geometry(tmp_path, tiny_data_dir, "--model", str(damaged)) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and "LinAlgError" not in error
    assert "row 0 (" in error.strip().splitlines()[-1] and "encodes to NaN or infinities" in error
    assert not (tmp_path / "g").exists()
