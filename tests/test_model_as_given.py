"""The model as given: a sentence-transformers folder scored with its own modules (Dense, Normalize) and prompts, a
plain encoder with mean pooling, an explicit --pooling rebuilding either; prompts reaching every encoding of queries
and documents (scoring, mining, validation, index and search); a fine-tune keeping the modules it started from."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from test_cli import run_cli
from test_retrieval_training import beir_task_folder

from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import load_retrieval, load_sts
from sbert_repro.evaluation import metrics
from sbert_repro.evaluation.scoring import encode_task, score_sts
from sbert_repro.model.encoder import Prompts, build_model, module_names, resolve_prompts

PROMPTS = {"query": "where: ", "document": "about: "}


def save_sentence_transformer(tiny_model_dir: Path, folder: Path, dense: bool = False, prompts: dict | None = None
                              ) -> Path:
    """The tiny BERT as a sentence-transformers folder: mean pooling, optionally a Dense layer (seeded), Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    torch.manual_seed(1)
    transformer = Transformer(str(tiny_model_dir))
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")]
    if dense:
        modules.append(Dense(transformer.get_embedding_dimension(), 16))
    modules.append(Normalize())
    SentenceTransformer(modules=modules, prompts=prompts, device="cpu").save(str(folder))
    return folder


@pytest.fixture(scope="module")
def dense_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sentence_transformer(tiny_model_dir, tmp_path_factory.mktemp("st") / "dense", dense=True)


@pytest.fixture(scope="module")
def prompted_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sentence_transformer(tiny_model_dir, tmp_path_factory.mktemp("st") / "prompted", prompts=PROMPTS)


def test_a_dense_layer_is_scored_as_sentence_transformers_encodes(dense_model_dir: Path, tiny_data_dir: Path):
    from sentence_transformers import SentenceTransformer

    pairs = load_sts("stsb", "test", tiny_data_dir)
    model = build_model(str(dense_model_dir), None, "cpu")
    assert module_names(model) == ["Transformer", "Pooling(mean)", "Dense(32->16)", "Normalize"]
    assert model.get_embedding_dimension() == 16
    scores, _ = score_sts(model, pairs, batch_size=16)
    reference = SentenceTransformer(str(dense_model_dir), device="cpu")
    u, v = (reference.encode(sentences, convert_to_numpy=True) for sentences in (pairs.sentences1, pairs.sentences2))
    expected = 100 * metrics.spearman(metrics.cosine_similarities(u, v), pairs.scores)
    assert scores["spearman"] == pytest.approx(expected, abs=0.01)
    rebuilt, _ = score_sts(build_model(str(dense_model_dir), "mean", "cpu"), pairs, batch_size=16)
    assert abs(rebuilt["spearman"] - expected) > 0.01  # without the Dense layer it is another model


def test_a_plain_encoder_still_gets_mean_pooling(tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys):
    assert module_names(build_model(str(tiny_model_dir), None, "cpu")) == ["Transformer", "Pooling(mean)"]
    code, err = run_cli(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                         "--sts-tasks", "stsb", "--retrieval-tasks", "none", "--output-dir", str(tmp_path / "raw"),
                         "--device", "cpu"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "raw" / "record.json").read_text())
    assert record["modules"] == ["Transformer", "Pooling(mean)"] and record["config"]["pooling"] == "mean"


def test_an_explicit_pooling_rebuilds_a_sentence_transformers_model_and_says_so(dense_model_dir: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="sbert_repro"):
        model = build_model(str(dense_model_dir), "cls", "cpu")
    assert module_names(model) == ["Transformer", "Pooling(cls)"]
    [line] = [record.getMessage() for record in caplog.records if "--pooling cls" in record.getMessage()]
    assert "Pooling, Dense, Normalize" in line


def test_the_models_prompts_reach_queries_and_documents(prompted_model_dir: Path, tiny_data_dir: Path):
    model = build_model(str(prompted_model_dir), None, "cpu")
    data = load_retrieval("scifact", tiny_data_dir)
    queries, documents = list(data.queries.values()), [f"{d['title']} {d['text']}" for d in data.corpus.values()]

    def plain(texts: list[str]) -> np.ndarray:
        return model.encode(texts, prompt="", normalize_embeddings=True, convert_to_numpy=True)

    docs, asked, _ = encode_task(model, data, 8, "scifact", prompts=resolve_prompts(model, TrainConfig()))
    np.testing.assert_allclose(docs, plain([PROMPTS["document"] + text for text in documents]), atol=1e-5)
    np.testing.assert_allclose(asked, plain([PROMPTS["query"] + text for text in queries]), atol=1e-5)
    assert not np.allclose(asked, plain(queries), atol=1e-3)  # the prompt changed the vectors
    given = resolve_prompts(model, TrainConfig(query_prompt="search: "))
    assert given == Prompts(query="search: ", document=PROMPTS["document"])
    _, searched, _ = encode_task(model, data, 8, "scifact", prompts=given)
    np.testing.assert_allclose(searched, plain(["search: " + text for text in queries]), atol=1e-5)


def test_prompts_reach_mining_validation_and_the_record(prompted_model_dir: Path, tiny_data_dir: Path,
                                                        tmp_path: Path, monkeypatch):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from sbert_repro.cli.main import main
    from sbert_repro.train import mining

    seen = {}
    original_encode, original_encode_to_disk = mining.encode, mining.encode_to_disk
    original_evaluator = InformationRetrievalEvaluator.__init__

    def encode_queries(*args, **kwargs):
        seen["mining"] = (kwargs["prompt"], seen.get("mining", (None, None))[1])
        return original_encode(*args, **kwargs)

    def encode_corpus(*args, **kwargs):
        seen["mining"] = (seen.get("mining", (None, None))[0], kwargs["prompt"])
        return original_encode_to_disk(*args, **kwargs)

    def evaluator(self, *args, **kwargs):
        seen["validation"] = (kwargs["query_prompt"], kwargs["corpus_prompt"])
        original_evaluator(self, *args, **kwargs)

    monkeypatch.setattr(mining, "encode", encode_queries)
    monkeypatch.setattr(mining, "encode_to_disk", encode_corpus)
    monkeypatch.setattr(InformationRetrievalEvaluator, "__init__", evaluator)
    data_dir = beir_task_folder(tmp_path, tiny_data_dir, None)
    out = tmp_path / "run"
    assert main(["finetune", "--model", str(prompted_model_dir), "--data-dir", str(data_dir), "--objective",
                 "retrieval", "--hard-negatives", "1", "--epochs", "1", "--batch-size", "8", "--sts-tasks", "none",
                 "--retrieval-tasks", "stsb-retrieval", "--document-prompt", "text: ", "--output-dir", str(out),
                 "--device", "cpu"]) == 0
    assert seen == {"mining": ("where: ", "text: "), "validation": ("where: ", "text: ")}
    assert not (out / "mining-cache").exists()  # the corpus's vectors, scratch once the run is done
    record = json.loads((out / "record.json").read_text())
    assert record["prompts"] == {"query": "where: ", "document": "text: "}
    assert record["modules"] == ["Transformer", "Pooling(mean)", "Normalize"]


def test_index_keeps_its_document_prompt_and_search_its_query_prompt(prompted_model_dir: Path, tiny_data_dir: Path,
                                                                      tmp_path: Path, capsys):
    from sentence_transformers import SentenceTransformer

    from sbert_repro.cli.main import main

    folder = tmp_path / "index"
    assert main(["index", "--model", str(prompted_model_dir), "--corpus", str(tiny_data_dir / "retrieval/scifact"),
                 "--output-dir", str(folder), "--device", "cpu", "--document-prompt", "text: "]) == 0
    meta = json.loads((folder / "index.json").read_text())
    assert meta["prompts"] == {"query": "where: ", "document": "text: "} and meta["pooling_given"] is None
    capsys.readouterr()
    assert main(["search", "--index-dir", str(folder), "--json", "--top-k", "1", "--device", "cpu",
                 "where is the cat"]) == 0
    [hit] = json.loads(capsys.readouterr().out.strip().splitlines()[0])["hits"]
    reference = SentenceTransformer(str(prompted_model_dir), device="cpu")
    query = reference.encode("where: where is the cat", normalize_embeddings=True)
    document = reference.encode("text: " + f"{hit['title']} {hit['text']}".strip(), normalize_embeddings=True)
    assert hit["score"] == pytest.approx(float(query @ document), abs=1e-4)


def test_a_prompt_name_the_model_lacks_is_one_line(prompted_model_dir: Path, tiny_data_dir: Path, tmp_path: Path,
                                                   capsys):
    code, err = run_cli(["evaluate", "--model", str(prompted_model_dir), "--data-dir", str(tiny_data_dir),
                         "--query-prompt-name", "passage", "--output-dir", str(tmp_path / "x"), "--device", "cpu"],
                        capsys)
    # (the lines before it are transformers' weight-loading progress bar)
    assert code == 2 and "Traceback" not in err and err.splitlines()[-1].startswith(
        "sbert-repro: error: --query-prompt-name 'passage': the model defines no such prompt (it has: document, query)")
    assert not (tmp_path / "x").exists()


def test_a_finetune_keeps_normalize_and_its_card_names_the_base_model(tiny_model_dir: Path, tiny_data_dir: Path,
                                                                       tmp_path: Path, capsys):
    """all-MiniLM-L6-v2's shape (mean pooling, then Normalize) on the tiny BERT: fine-tuned, still unit vectors; the
    card names the base model, the data, the loss and the test scores; --report-to tensorboard leaves event files in
    the run folder; the Trainer's log dicts give way to one line per evaluation."""
    pytest.importorskip("tensorboard", reason="the test extra tensorboard is not installed")
    from sentence_transformers import SentenceTransformer

    base = save_sentence_transformer(tiny_model_dir, tmp_path / "minilm-shaped")
    out = tmp_path / "run"
    from sbert_repro.cli.main import main

    code = main(["finetune", "--model", str(base), "--data-dir", str(tiny_data_dir), "--epochs", "2",
                 "--batch-size", "16", "--sts-tasks", "stsb", "--retrieval-tasks", "scifact",
                 "--report-to", "tensorboard", "--output-dir", str(out), "--device", "cpu"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    model = SentenceTransformer(str(out / "model"), device="cpu")
    assert module_names(model)[-1] == "Normalize"
    vectors = model.encode(load_sts("stsb", "test", tiny_data_dir).sentences1, convert_to_numpy=True)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    card = (out / "model" / "README.md").read_text()
    assert "minilm-shaped fine-tuned by sbert-repro (sts-cosine, seed 42)" in card
    [base_line] = [line for line in card.splitlines() if "**Base model:**" in line]
    assert "minilm-shaped](" in base_line and "Unknown" not in base_line
    assert "sts-cosine" in card and "CosineSimilarityLoss" in card and "stsb/train.jsonl" in card
    record = json.loads((out / "record.json").read_text())
    assert f"| stsb | spearman | {record['baseline']['scores']['stsb/spearman']:.2f} | " \
           f"{record['finetuned']['scores']['stsb/spearman']:.2f} |" in card
    assert list((out / "tensorboard" / "sts-cosine").rglob("events.out.tfevents.*"))
    assert "{'loss'" not in printed.out + printed.err and "{'eval_" not in printed.out + printed.err
    lines = [line for line in printed.err.splitlines() if "validation stsb-validation_spearman_cosine" in line]
    # one per evaluation (after the cursor moves tqdm writes to step above its bars)
    assert len(lines) == 2 and "step 6/12 (epoch 1.00): training loss " in lines[0]


def test_an_unknown_report_to_is_one_line(tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys):
    code, err = run_cli(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                         "--report-to", "comet", "--output-dir", str(tmp_path / "x")], capsys)
    assert (code, err) == (2, "sbert-repro: error: --report-to: unknown integration 'comet'; choose from none, "
                              "tensorboard, wandb, mlflow, all")


@pytest.mark.parametrize("command", ["evaluate", "finetune", "index", "search", "geometry", "bm25", "compare"])
def test_every_command_answers_version(command: str, capsys):
    import sbert_repro
    from sbert_repro.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"sbert-repro {sbert_repro.__version__}"


@pytest.mark.parametrize("saved_in", ["bfloat16", "float16"])
def test_a_half_precision_checkpoint_is_trained_and_scored_from_fp32_weights(tiny_model_dir, tmp_path, saved_in):
    """transformers loads a checkpoint in the dtype it was saved in; the weights a run updates are fp32 whatever that
    was (lr 2e-5 is below bf16's resolution): a plain encoder, a sentence-transformers folder, a cross-encoder."""
    import torch
    from transformers import AutoTokenizer, BertModel

    from sbert_repro.model.cross_encoder import load_cross_encoder, new_cross_encoder

    half = tmp_path / saved_in
    BertModel.from_pretrained(tiny_model_dir).to(getattr(torch, saved_in)).save_pretrained(half)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(half)
    assert BertModel.from_pretrained(half).dtype == getattr(torch, saved_in)  # as the library gives it
    plain = build_model(str(half), None, "cpu")
    build_model(str(half), None, "cpu").half().save(str(tmp_path / "st-half"))  # a sentence-transformers folder
    cross = new_cross_encoder(str(half), "cpu")
    cross.save_pretrained(str(tmp_path / "cross"))
    loaded = [plain, build_model(str(tmp_path / "st-half"), None, "cpu"), build_model(str(half), "cls", "cpu"), cross,
              load_cross_encoder(str(tmp_path / "cross"), "cpu")]
    assert [{parameter.dtype for parameter in model.parameters()} for model in loaded] == [{torch.float32}] * 5


@pytest.mark.parametrize("saved_in", ["bfloat16", "float16"])
def test_a_half_precision_checkpoint_fine_tunes_its_weights_in_fp32(tiny_model_dir, tiny_data_dir, tmp_path, saved_in):
    """Fine-tuned in the dtype it was saved in, a bf16 model would keep almost every weight: an update of lr x ~1 is
    far below bf16's resolution near the weights' size. In fp32 nearly every weight moves."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertModel

    from sbert_repro.cli.main import main

    half = tmp_path / saved_in
    BertModel.from_pretrained(tiny_model_dir).to(getattr(torch, saved_in)).save_pretrained(half)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(half)
    out = tmp_path / "run"
    assert main(["finetune", "--model", str(half), "--data-dir", str(tiny_data_dir), "--output-dir", str(out),
                 "--epochs", "1", "--lr", "1e-4", "--sts-tasks", "stsb", "--retrieval-tasks", "none",
                 "--device", "cpu", "--precision", "bf16"]) == 0
    before = {name: tensor.float() for name, tensor in load_file(half / "model.safetensors").items()}
    after = load_file(out / "model" / "model.safetensors")
    assert {tensor.dtype for tensor in after.values()} == {torch.float32}
    weights = [name for name in after if name.endswith(".weight") and "LayerNorm" not in name]
    moved = sum(int((after[name] != before[name]).sum()) for name in weights)
    assert moved / sum(after[name].numel() for name in weights) > 0.9
    record = json.loads((out / "record.json").read_text())
    assert record["training"]["weights_dtype"] == "float32" and record["config"]["precision"] == "bf16"
