"""Every option that can be checked before encoding is checked before encoding: `--index` strings are built by faiss
for the model's dimension (and each corpus's size) as soon as the model is, search-time knobs are judged against the
index type, and the messages name only options the command has."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from sbert_repro.cli.main import main
from sbert_repro.errors import UsageError
from sbert_repro.runs.records import check_run_dir, create_run_dir
from sbert_repro.search.faiss_index import check_index_before_encoding


@pytest.fixture
def no_encoding(monkeypatch):
    """Encoding anything fails the test: the checks must come first."""
    def encode(*args, **kwargs):
        raise AssertionError("encoded before every option was checked")

    monkeypatch.setattr(SentenceTransformer, "encode", encode)


def evaluate_cli(model: Path, data: Path, out: Path, capsys, *options: str) -> tuple[int, str]:
    code = main(["evaluate", "--model", str(model), "--data-dir", str(data), "--output-dir", str(out),
                 "--device", "cpu", *options])
    return code, capsys.readouterr().err.strip()


def test_an_index_string_faiss_cannot_parse_stops_evaluate_before_any_encoding(tiny_model_dir, tiny_data_dir,
                                                                               tmp_path, capsys, no_encoding):
    start = time.perf_counter()
    code, err = evaluate_cli(tiny_model_dir, tiny_data_dir, tmp_path / "out", capsys,
                             "--index", "IVF4096,Flut", "--retrieval-tasks", "scifact")
    # (transformers' bar of the weights loaded may come before it)
    assert code == 2 and err.splitlines()[-1].startswith("sbert-repro: error: --index 'IVF4096,Flut': faiss cannot "
                                                         "build it (could not parse code description Flut")
    assert time.perf_counter() - start < 10 and not (tmp_path / "out").exists()


def test_more_ivf_lists_than_a_corpus_has_documents_stops_evaluate_before_any_encoding(
        tiny_model_dir, tiny_data_dir, tmp_path, capsys, no_encoding):
    code, err = evaluate_cli(tiny_model_dir, tiny_data_dir, tmp_path / "out", capsys,
                             "--index", "IVF4096,Flat", "--retrieval-tasks", "scifact")
    assert code == 2 and ("4096 IVF lists need at least 159744 training vectors (faiss's minimum, 39 a list), and "
                          "this corpus gives 24; use at most 1 list") in err


def test_a_pq_split_that_does_not_divide_the_dimension_stops_evaluate_before_any_encoding(
        tiny_model_dir, tiny_data_dir, tmp_path, capsys, no_encoding):
    # the tiny model's vectors have 32 dimensions: 24 sub-quantizers cannot split them, whatever the string says
    code, err = evaluate_cli(tiny_model_dir, tiny_data_dir, tmp_path / "out", capsys,
                             "--index", "IVF4,PQ24", "--retrieval-tasks", "scifact")
    assert code == 2 and err.splitlines()[-1].startswith("sbert-repro: error: --index 'IVF4,PQ24': faiss cannot "
                                                         "build it")


def test_search_knobs_are_judged_by_faiss_on_the_index_itself():
    with pytest.raises(UsageError, match="--nprobe: this index has no nprobe"):
        check_index_before_encoding("HNSW32", 32, 100, 100, nprobe=4, ef_search=None)
    with pytest.raises(UsageError, match="--ef-search: this index has no efSearch"):
        check_index_before_encoding("IVF4,Flat", 32, 200, None, nprobe=None, ef_search=16)
    check_index_before_encoding("IVF4_HNSW32,Flat", 32, 200, None, nprobe=2, ef_search=16)  # the quantizer's


def test_an_existing_folder_names_only_the_options_the_command_has(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "record.json").write_text("{}")
    code, err = evaluate_cli(tiny_model_dir, tiny_data_dir, out, capsys, "--sts-tasks", "stsb",
                             "--retrieval-tasks", "none")
    assert code == 2 and "--resume" not in err  # evaluate has none
    assert err.endswith("already exists and is not empty; choose a new folder or replace it with --overwrite")
    with pytest.raises(UsageError, match="not empty; choose a new folder, continue it with --resume or replace it "
                                         "with --overwrite$"):
        check_run_dir(out, options=("--resume", "--overwrite"))  # finetune's
    with pytest.raises(UsageError, match="not empty; choose a new folder$"):
        create_run_dir(out)  # a benchmark's: neither option
