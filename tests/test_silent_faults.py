"""Faults that would end with exit status 0 and a wrong or damaging result: a lock bypassed through a symbolic link,
make_tables erasing README's block, a NaN in a record, a model folder without a tokenizer, ids that are not ids,
an unfinished run copied into results/, records that misstate what was done, seeds that fail late, and files with
a UTF-8 byte-order mark refused. Each now ends in one line (or is read as common tools write it)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, write_jsonl
from test_faults import one_line, train_args
from test_nothing_lost import contents, evaluate_args, index_args, results_with_two_runs

from sbert_repro.cli.main import main
from sbert_repro.errors import UsageError
from sbert_repro.report.results_page import README_BLOCK

# ----------------------------------------------------------------------------- one folder, one writer, by any name

def test_a_folder_reached_through_a_link_has_the_lock_of_its_target(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                   monkeypatch, capsys):
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    real, link = tmp_path / "a", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    short = ["--max-train-samples", "32"]  # 4 steps
    assert main([*train_args(tiny_model_dir, tiny_data_dir, tmp_path / "uninterrupted"), *short]) == 0
    # The first run waits in its second training step until the second one, through the link, has tried.
    gate, original, calls, exits = threading.Event(), CosineSimilarityLoss.forward, [], []

    def forward(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            gate.wait(300)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CosineSimilarityLoss, "forward", forward)
    first = threading.Thread(target=lambda: exits.append(main([*train_args(tiny_model_dir, tiny_data_dir, real),
                                                               *short])))
    first.start()
    try:
        while len(calls) < 2:
            assert first.is_alive()
            time.sleep(0.05)
        capsys.readouterr()
        # flock locks belong to an open file, not a process: this one is refused as another process would be
        assert main([*train_args(tiny_model_dir, tiny_data_dir, link), *short, "--resume"]) == 2
        refused = capsys.readouterr().err
    finally:
        gate.set()
        first.join()
    one_line(refused, f"--output-dir {link}: another process (pid {os.getpid()}) is writing to it")
    assert exits == [0]
    survivor, alone = (json.loads((folder / "record.json").read_text())
                       for folder in (real, tmp_path / "uninterrupted"))
    assert survivor["finetuned"]["scores"] == alone["finetuned"]["scores"]


# ----------------------------------------------------------------------------- make_tables erases nothing

def tables(*argv: str) -> int:
    from sbert_repro.cli.tables import make_tables_script

    return make_tables_script(list(argv), REPO_ROOT)


def test_make_tables_refuses_a_results_folder_without_records_and_leaves_readme_as_it_was(tmp_path, capsys):
    readme = tmp_path / "README.md"
    shutil.copyfile(REPO_ROOT / "README.md", readme)
    before = readme.read_bytes()
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "typo" / "results"):
        assert tables("--results-dir", str(folder), "--readme", str(readme)) == 2
        one_line(capsys.readouterr().err, f"--results-dir {folder}: no records in {folder / 'records'}")
    assert readme.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "empty"]  # typo/ is not made


def test_make_tables_refuses_a_missing_readme_and_changes_nothing(tmp_path, capsys):
    results = results_with_two_runs(tmp_path)
    before = contents(tmp_path)
    assert tables("--results-dir", str(results), "--readme", str(tmp_path / "missing.md")) == 2
    one_line(capsys.readouterr().err, f"--readme {tmp_path / 'missing.md'}: cannot read it")
    assert contents(tmp_path) == before


def finished_run(tmp_path: Path, status: str = "complete") -> Path:
    from test_tables import fake_record

    run = tmp_path / "runs" / "my-run"
    run.mkdir(parents=True)
    record = fake_record(1, 80.0)
    record["status"] = status
    record["config"]["argv"] = ["finetune", "--model", "m", "--output-dir", "elsewhere/my-run", "--save-steps", "5"]
    (run / "record.json").write_text(json.dumps(record))
    return run


def test_add_refuses_an_unfinished_run_with_the_command_that_finishes_it(tmp_path, capsys):
    run = finished_run(tmp_path, status="incomplete")
    results = results_with_two_runs(tmp_path)
    before = contents(results)
    (tmp_path / "README.md").write_text("".join(README_BLOCK))
    assert tables("--results-dir", str(results), "--readme", str(tmp_path / "README.md"), "--add", str(run)) == 2
    one_line(capsys.readouterr().err, f"--add {run}: {run / 'record.json'} is a run that did not finish",
             f"finish it with `sbert-repro finetune --model m --save-steps 5 --output-dir {run} --resume`")
    assert contents(results) == before


def test_add_copies_no_link_out_of_the_run_folder_and_keeps_a_private_file_private(tmp_path, capsys):
    from sbert_repro.report import pages

    run = finished_run(tmp_path)
    secret = tmp_path / "secret.md"
    secret.write_text("private")
    secret.chmod(0o600)
    (run / "scores.md").symlink_to(secret)
    results = results_with_two_runs(tmp_path)
    with pytest.raises(UsageError, match=f"{run / 'scores.md'} is a symbolic link to {secret}"):
        pages.make_tables(results, add=[run])
    assert not (results / "records" / "my-run").exists()
    (run / "scores.md").unlink()
    (run / "record.json").chmod(0o600)
    pages.make_tables(results, add=[run])
    assert stat.S_IMODE((results / "records" / "my-run" / "record.json").stat().st_mode) == 0o600


# ----------------------------------------------------------------------------- records are strict JSON

def zero_weight_model(source: Path, folder: Path) -> Path:
    """`source` with every weight 0: every sentence gets the same vector."""
    from transformers import AutoModel

    shutil.copytree(source, folder)
    model = AutoModel.from_pretrained(folder)
    for parameter in model.parameters():
        parameter.data.zero_()
    model.save_pretrained(folder)
    return folder


def test_a_constant_vector_model_stops_with_one_line_and_no_record_on_every_path(tiny_model_dir, tiny_data_dir,
                                                                                 tmp_path, capsys):
    model = zero_weight_model(tiny_model_dir, tmp_path / "zeros")
    out = tmp_path / "run"
    retrieval_only = [*evaluate_args(model, tiny_data_dir, out)[:-6], "--sts-tasks", "none", "--retrieval-tasks",
                      "scifact", "--device", "cpu"]
    for command in (evaluate_args(model, tiny_data_dir, out), train_args(model, tiny_data_dir, out), retrieval_only,
                    index_args(model, tiny_data_dir / "retrieval" / "scifact", tmp_path / "idx")):
        capsys.readouterr()
        assert main(command) == 2
        one_line(capsys.readouterr().err, "row 0 (", "encodes to a vector of zeros")
        assert not list(tmp_path.rglob("record.json")) and not list(tmp_path.rglob("index.json"))


def test_different_texts_that_all_encode_to_one_vector_are_refused():
    import numpy as np

    from sbert_repro.model.encoder import check_vectors

    texts = [f"text {i}" for i in range(16)]
    with pytest.raises(UsageError, match="all 16 texts \\(rows 8 to 23\\) encode to one same vector"):
        check_vectors(np.ones((16, 4), dtype=np.float32), "corpus", texts, first_row=8)
    check_vectors(np.ones((16, 4), dtype=np.float32), "corpus", ["a"] * 16)  # one text 16 times: one vector
    check_vectors(np.ones((2, 4), dtype=np.float32), "queries", ["Paris", "paris"])  # near-duplicates may agree
    check_vectors(np.eye(16, dtype=np.float32), "corpus", texts)
    check_vectors(np.zeros((1, 4), dtype=np.float32), "corpus", [""])  # an empty document may encode to zeros
    with pytest.raises(UsageError, match="row 0 \\('a'\\) encodes to a vector of zeros"):
        check_vectors(np.zeros((1, 4), dtype=np.float32), "corpus", ["a"])


def test_a_record_is_never_written_with_a_nan(tmp_path):
    from sbert_repro.runs.records import write_json_atomic

    with pytest.raises(UsageError, match=r"not written, since scores\.stsb/spearman is not a finite number"):
        write_json_atomic(tmp_path / "record.json", {"scores": {"stsb/spearman": float("nan")}})
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- a model folder checked first

def broken_model(source: Path, folder: Path, how: str) -> Path:
    shutil.copytree(source, folder)
    if how == "no tokenizer files":
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    elif how == "truncated weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "empty weights":
        (folder / "model.safetensors").write_bytes(b"")
    elif how == "a config with more layers":  # transformers would draw the missing layer at random
        config = json.loads((folder / "config.json").read_text())
        config["num_hidden_layers"] += 1
        (folder / "config.json").write_text(json.dumps(config))
    else:  # a config that is not the weights'
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    return folder


@pytest.mark.parametrize("how, said", [
    ("no tokenizer files", "its tokenizer knows no word of"),
    ("truncated weights", "model.safetensors cannot be read"),
    ("empty weights", "model.safetensors is empty"),
    ("a config for other weights", "its config.json does not match its weights"),
    ("a config with more layers", "config.json asks for 3 layers and the weights hold 2"),
])
def test_a_broken_model_folder_is_refused_before_any_encoding(tiny_model_dir, tiny_data_dir, tmp_path, capsys,
                                                              monkeypatch, how, said):
    from sbert_repro.evaluation import scoring

    def never(*args, **kwargs):
        raise AssertionError("encoded with a broken model")

    monkeypatch.setattr(scoring, "encode", never)
    model = broken_model(tiny_model_dir, tmp_path / "model", how)
    assert main(evaluate_args(model, tiny_data_dir, tmp_path / "run")) == 2
    one_line(capsys.readouterr().err, f"--model {model}: {said}")
    assert not (tmp_path / "run").exists()


def test_a_load_report_goes_to_the_log_file_and_the_terminal_shows_the_one_line_error(tiny_model_dir, tiny_data_dir,
                                                                                      tmp_path):
    import subprocess
    import sys

    model = broken_model(tiny_model_dir, tmp_path / "model", "a config for other weights")
    command = [sys.executable, "-m", "sbert_repro.cli.main", *evaluate_args(model, tiny_data_dir, tmp_path / "run")]
    environment = {**os.environ, "SBERT_REPRO_LOG_DIR": str(tmp_path / "logs")}
    quiet = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    error = f"sbert-repro: error: --model {model}: its config.json does not match its weights"
    assert quiet.returncode == 2 and "LOAD REPORT" not in quiet.stderr and "Traceback" not in quiet.stderr
    assert [line for line in quiet.stderr.splitlines() if "sbert_repro" not in line][-1].startswith(error)
    assert "LOAD REPORT" in (tmp_path / "logs" / "evaluate.log").read_text()  # kept for whoever wants it


def test_verbose_leaves_the_libraries_messages_where_they_go_and_every_routing_is_undone_after(tmp_path,
                                                                                               monkeypatch):
    import logging

    from sbert_repro.cli.logs import library_messages

    monkeypatch.setenv("SBERT_REPRO_LOG_DIR", str(tmp_path))
    root, datasets_logger = logging.getLogger(), logging.getLogger("datasets")
    before = (list(root.handlers), list(datasets_logger.handlers))
    with library_messages("evaluate", verbose=True) as path:
        assert path is None and (list(root.handlers), list(datasets_logger.handlers)) == before
    with library_messages("evaluate", verbose=False) as path:
        logging.getLogger("transformers.modeling_utils").warning("a load report")
        assert path == tmp_path / "evaluate.log" and datasets_logger.handlers == []
    assert (list(root.handlers), list(datasets_logger.handlers)) == before  # as it was: a notebook keeps its logging
    assert "a load report" in path.read_text()


def test_a_task_folder_named_with_escapes_and_markdown_is_printed_and_written_as_text(tiny_model_dir, tiny_data_dir,
                                                                                      tmp_path, capsys):
    import re

    name = "we|ird <b>[x](y) \x1b[31mred\u202eevil"
    task = Path(shutil.copytree(tiny_data_dir / "retrieval" / "scifact", tmp_path / name))
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny_model_dir), "--retrieval-tasks", str(task), "--sts-tasks", "none",
                 "--output-dir", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    for said in (printed.out, printed.err):
        assert "\x1b" not in said and "\u202e" not in said
    rows = [line for line in (out / "scores.md").read_text().splitlines() if "ndcg@10" in line]
    assert rows and all(len(re.split(r"(?<!\\)\|", row)) == 5 for row in rows)  # task | metric | score, no more
    assert "\\<b\\>\\[x\\](y)" in rows[0] and "\x1b" not in rows[0]  # literal text, not HTML or a link
    assert main(["evaluate", "--model", str(tmp_path / "no\x1b]0;title\x07such"), "--output-dir", str(out)]) == 2
    assert "\x1b" not in capsys.readouterr().err  # the error line names the folder without its escapes


# ----------------------------------------------------------------------------- ids are ids

def test_ids_are_non_empty_strings_or_integers_and_anything_else_is_refused_with_its_line(tmp_path):
    from sbert_repro.data.corpus import iter_corpus

    for value in ([1, 2], {"a": 1}, True, "", "  ", 1.5):
        corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": 7, "text": "a"}, {"_id": value, "text": "b"}])
        with pytest.raises(UsageError, match=f"{corpus}:2: field '_id' must be a non-empty string or an integer"):
            list(iter_corpus(corpus))
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": 7, "text": "a"}, {"_id": "d2", "text": "b"}])
    assert [doc_id for doc_id, _, _ in iter_corpus(corpus)] == ["7", "d2"]  # as BEIR reads an integer id


# ----------------------------------------------------------------------------- records say what was done

def test_max_train_samples_past_the_set_records_the_pairs_trained_on(tiny_model_dir, tiny_data_dir, tmp_path):
    from sbert_repro.config.training import TrainConfig
    from sbert_repro.pipeline.finetune_data import load_finetune_data

    data = load_finetune_data(TrainConfig(model=str(tiny_model_dir), data_dir=tiny_data_dir, sts_tasks=("stsb",),
                                          retrieval_tasks=(), max_train_samples=100_000, output_dir=tmp_path / "r"))
    assert len(data.train_sets["sts-cosine"]) == 96
    assert "first" not in data.sources()["train (sts-cosine)"]
    some = load_finetune_data(TrainConfig(model=str(tiny_model_dir), data_dir=tiny_data_dir, sts_tasks=("stsb",),
                                          retrieval_tasks=(), max_train_samples=10, output_dir=tmp_path / "r"))
    assert some.sources()["train (sts-cosine)"].endswith("(first 10)")


def test_a_finetune_without_tasks_is_refused(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    args = train_args(tiny_model_dir, tiny_data_dir, tmp_path / "run")
    args[args.index("--sts-tasks") + 1] = "none"
    assert main(args) == 2
    one_line(capsys.readouterr().err, "--sts-tasks none --retrieval-tasks none: nothing to score")
    assert not (tmp_path / "run").exists()


def test_resuming_a_finetune_in_an_evaluate_folder_names_the_command(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(evaluate_args(tiny_model_dir, tiny_data_dir, out)) == 0
    before = contents(out)
    capsys.readouterr()
    assert main([*train_args(tiny_model_dir, tiny_data_dir, out), "--resume"]) == 2
    one_line(capsys.readouterr().err, f"--resume: {out} holds a run made by `sbert-repro evaluate`, not by finetune")
    assert contents(out) == before


def test_a_moved_run_resumes(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch):
    from test_nothing_lost import interrupt_training_at_step

    args = ["--objective", "nli-then-stsb", "--nli-task", "snli", "--nli-split", "validation",
            "--max-train-samples", "32", "--save-steps", "2"]  # 4 steps a stage
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_training_at_step(patch, 3)  # in the STSb stage: the NLI stage is finished
        assert main([*train_args(tiny_model_dir, tiny_data_dir, out), *args]) == 130
    moved = tmp_path / "moved"
    out.rename(moved)
    assert main([*train_args(tiny_model_dir, tiny_data_dir, moved), *args, "--resume"]) == 0
    record = json.loads((moved / "record.json").read_text())
    assert record["status"] == "complete"
    nli, stsb = record["training_stages"]
    assert nli["best_checkpoint"].startswith("checkpoints/nli-softmax/checkpoint-")
    assert stsb["resumed_from"] == "checkpoints/sts-cosine/checkpoint-2"


# ----------------------------------------------------------------------------- options checked where declared

@pytest.mark.parametrize("seed", ["-1", "4294967296"])
@pytest.mark.parametrize("command", ["finetune", "geometry", "index"])
def test_a_seed_numpy_cannot_take_is_refused_before_any_work(tiny_model_dir, tiny_data_dir, tmp_path, capsys,
                                                             command, seed):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": "the cat"}])
    args = {"finetune": train_args(tiny_model_dir, tiny_data_dir, tmp_path / "run"),
            "geometry": ["geometry", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                         "--output-dir", str(tmp_path / "run"), "--device", "cpu"],
            "index": index_args(tiny_model_dir, corpus, tmp_path / "run")}[command]
    assert main([*args, "--seed", seed]) == 2
    one_line(capsys.readouterr().err, f"--seed must be an integer from 0 to 4294967295, got {seed}")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- a UTF-8 byte-order mark

BOM = "\ufeff"


def test_a_byte_order_mark_is_read_as_utf_8_sig_reads_it(tmp_path):
    from sbert_repro.config.indexing import SearchConfig
    from sbert_repro.data.corpus import iter_corpus
    from sbert_repro.data.loaders import read_beir_folder
    from sbert_repro.data.sources import read_sentences
    from sbert_repro.pipeline.search_run import read_queries

    folder = tmp_path / "beir"
    write_jsonl(folder / "corpus.jsonl", [{"_id": "d1", "text": "a cat"}, {"_id": "d2", "text": "a dog"}])
    write_jsonl(folder / "queries.jsonl", [{"_id": "q1", "text": "cat?"}])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    for path in (folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv"):
        path.write_text(BOM + path.read_text(encoding="utf-8"), encoding="utf-8")  # as Excel saves UTF-8
    data = read_beir_folder(folder, "test", "beir")
    assert list(data.corpus) == ["d1", "d2"] and data.qrels == {"q1": {"d1": 1}}
    assert [doc_id for doc_id, _, _ in iter_corpus(folder)] == ["d1", "d2"]
    lines = tmp_path / "lines.txt"
    lines.write_text(BOM + "first sentence\nsecond sentence\n", encoding="utf-8")
    assert read_sentences(lines, "--fit-on") == ["first sentence", "second sentence"]
    assert read_queries(SearchConfig(index_dir=tmp_path, queries_file=lines)) == [("1", "first sentence"),
                                                                               ("2", "second sentence")]


def test_sts_files_with_a_byte_order_mark_score_as_without_it(tiny_model_dir, tiny_data_dir, tmp_path):
    marked = Path(shutil.copytree(tiny_data_dir, tmp_path / "data"))
    test = marked / "sts" / "stsb" / "test.jsonl"
    test.write_text(BOM + test.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(evaluate_args(tiny_model_dir, tiny_data_dir, tmp_path / "plain")) == 0
    assert main(evaluate_args(tiny_model_dir, marked, tmp_path / "marked")) == 0
    scores = [json.loads((tmp_path / name / "record.json").read_text())["scores"] for name in ("plain", "marked")]
    assert scores[0] == scores[1]



def test_a_title_that_is_not_a_string_is_refused_not_dropped(tmp_path):
    from sbert_repro.data.corpus import iter_corpus

    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": None, "text": "a"},
                                                     {"_id": "d2", "title": 0, "text": "b"}])
    with pytest.raises(UsageError, match=f"{corpus}:2: field 'title' must be a string, got 0; fix the row"):
        list(iter_corpus(corpus))


def test_a_tokenizer_with_ids_past_the_embedding_table_is_one_line_before_any_encoding(tiny_model_dir, tmp_path,
                                                                                      capsys):
    from transformers import BertConfig, BertModel

    from sbert_repro.cli.main import main

    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "small-table"))
    config = BertConfig.from_pretrained(folder)
    config.vocab_size = 10  # the tokenizer has about 40 ids
    BertModel(config).save_pretrained(folder)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": "we like the cat"}])
    code = main(["index", "--model", str(folder), "--corpus", str(corpus), "--output-dir", str(tmp_path / "idx"),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "its tokenizer has ids up to" in err.strip().splitlines()[-1]
    assert "the model's token embedding table has 10 rows" in err


@pytest.mark.parametrize("change, message", [
    (lambda config, folder: config.update(num_hidden_layers=1), "config.json asks for 1 layers and the weights hold 2; "
                                                               "the last would be dropped"),
    (lambda config, folder: config.update(model_type="roberta"), "config.json says model_type 'roberta', and the "
                                                                 "architecture it names (BertModel) is 'bert''s"),
    (lambda config, folder: rename_weights(folder), "of the model's weights are not in its weight files (e.g. "),
])
def test_a_model_is_loaded_as_saved_or_refused_in_one_line(tiny_model_dir, tmp_path, capsys, change, message):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "changed"))
    config = json.loads((folder / "config.json").read_text())
    change(config, folder)
    (folder / "config.json").write_text(json.dumps(config))
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": "we like the cat"}])
    code = main(["index", "--model", str(folder), "--corpus", str(corpus), "--output-dir", str(tmp_path / "idx"),
                 "--device", "cpu"])
    assert code == 2
    one_line(capsys.readouterr().err, message)


def rename_weights(folder: Path) -> None:
    """Every tensor of the weights under a name no parameter has (weights "of another architecture")."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    save_file({f"other.{name}": tensor for name, tensor in tensors.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
