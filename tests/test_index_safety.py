"""Nothing lost around an index folder: it pins its model (an absolute reference and a fingerprint of weights and
tokenizer), a damaged folder, a full disk or a bad option is one line, and search's output cannot drive the
terminal."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import write_jsonl

from sbert_repro.cli.main import main
from sbert_repro.errors import UsageError
from sbert_repro.pipeline import index_run
from sbert_repro.runs import records
from sbert_repro.search import store


def index_args(model: Path | str, corpus: Path, out: Path, *options: str) -> list[str]:
    return ["index", "--model", str(model), "--corpus", str(corpus), "--output-dir", str(out), "--device", "cpu",
            "--precision", "fp32", "--chunk-size", "4", *options]


def search_args(folder: Path, *options: str) -> list[str]:
    return ["search", "--index-dir", str(folder), "--device", "cpu", "--top-k", "2", *options]


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def one_error_line(capsys, message: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert "Traceback" not in err and len(lines) == 1 and message in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rows = [{"_id": f"doc-{word}", "text": f"we like the {word}"} for word in ("cat", "dog", "rain", "car", "bus")]
    rows.append({"_id": "doc-\x1b]0;pwned\x07", "text": "the cat \x1b[2J\x9b31m\u202eevil\nline"})
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", rows)


@pytest.fixture(scope="module")
def model_copy(tiny_model_dir, tmp_path_factory) -> Path:
    """A copy of the tiny model whose weights the tests may change."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="module")
def built(model_copy, corpus, tmp_path_factory) -> Path:
    """An index built with a relative --model path, from the models' parent folder."""
    folder = tmp_path_factory.mktemp("indexes") / "idx"
    here = os.getcwd()
    os.chdir(model_copy.parent)
    try:
        assert main(index_args(model_copy.name, corpus, folder)) == 0
    finally:
        os.chdir(here)
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "idx"))


def other_weights(model: Path, into: Path) -> Path:
    """The same model with one weight changed: same dimension, other vectors."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, into)
    weights = load_file(into / "model.safetensors")
    name = next(name for name in weights if name.endswith("word_embeddings.weight"))
    weights[name] = weights[name] + 0.5
    save_file(weights, into / "model.safetensors", metadata={"format": "pt"})
    return into


# ----------------------------------------------------------------------------- the model is pinned

def test_index_json_pins_the_model_by_absolute_path_and_fingerprint(built, model_copy, tmp_path, capsys,
                                                                    monkeypatch):
    meta = json.loads((built / "index.json").read_text())
    assert meta["model"] == meta["config"]["model"]
    assert Path(meta["model"]).is_absolute() and Path(meta["model"]).resolve() == model_copy.resolve()  # given relative
    assert len(meta["model_sha256"]) == 64
    assert json.loads((built / "encode-progress.json").read_text())["model_sha256"] == meta["model_sha256"]
    monkeypatch.chdir(tmp_path)  # where the relative path means nothing
    capsys.readouterr()
    assert main(search_args(built, "--json", "the cat")) == 0
    assert len(json.loads(capsys.readouterr().out.splitlines()[0])["hits"]) == 2


def test_other_weights_at_the_same_path_are_refused_by_resume_and_search(built, model_copy, corpus, tmp_path,
                                                                        capsys):
    folder = copy_of(built, tmp_path)
    original = Path(shutil.copytree(model_copy, tmp_path / "original"))
    before = contents(folder)
    meta = json.loads((folder / "index.json").read_text())
    retrained = other_weights(original, tmp_path / "retrained")
    meta["model"] = meta["config"]["model"] = str(retrained)  # as if the weights at the index's path had changed
    (folder / "index.json").write_text(json.dumps(meta))
    before["index.json"] = (folder / "index.json").read_bytes()
    capsys.readouterr()
    assert main(search_args(folder, "the cat")) == 2
    one_error_line(capsys, f"{retrained}: its weights or tokenizer are not those {folder} was encoded with")
    assert main(index_args(retrained, corpus, folder, "--resume")) == 2
    one_error_line(capsys, f"--resume: {folder} was encoded by a model with other weights or tokenizer than "
                           f"{retrained}")
    assert contents(folder) == before
    # --model may point at a copy with the same weights (moved, say), and at no other
    assert main(search_args(folder, "--model", str(original), "the cat")) == 0
    assert main(search_args(folder, "--model", str(retrained), "the cat")) == 2
    one_error_line(capsys, f"--model {retrained}: its weights or tokenizer are not those")


def test_a_model_of_another_dimension_is_one_line(built, tmp_path, capsys):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    wide = tmp_path / "wide"
    tokenizer = BertTokenizerFast.from_pretrained(json.loads((built / "index.json").read_text())["model"])
    tokenizer.save_pretrained(wide)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(wide)
    capsys.readouterr()
    assert main(search_args(built, "--model", str(wide), "the cat")) == 2
    one_error_line(capsys, f"--model {wide}: gives 48-dimensional vectors, and {built} holds 32-dimensional ones")


# ----------------------------------------------------------------------------- damaged folders are one line

def cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "index.json": lambda path: path.write_text("{not json"),
    "embeddings.f32": cut,  # a Flat folder's index: search reads it
    "documents.jsonl": lambda path: path.write_bytes(b""),
    "offsets.npy": lambda path: path.write_bytes(b"garbage"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_search_of_a_damaged_index_folder_is_one_line(built, tmp_path, capsys, name):
    folder = copy_of(built, tmp_path)
    DAMAGE[name](folder / name)
    before = contents(folder)
    capsys.readouterr()
    assert main(search_args(folder, "the cat", "the bus")) == 2
    one_error_line(capsys, "is damaged or incomplete")
    assert contents(folder) == before


def edited(field: str, value: object):
    """A damage that sets one field of index.json (a dotted name reaches into config)."""
    def edit(path: Path) -> None:
        meta = json.loads(path.read_text())
        *parents, last = field.split(".")
        target = meta
        for part in parents:
            target = target[part]
        target[last] = value
        path.write_text(json.dumps(meta))
    return edit


@pytest.mark.parametrize(("field", "value", "said"), [
    ("max_seq_length", -1, "max_seq_length: input should be greater than or equal to 1, it holds -1"),
    ("pooling_given", "median", "pooling_given: input should be 'mean', 'cls' or 'max', it holds \"median\""),
    ("prompts", "query: ", "prompts: input should be a valid dictionary, it holds \"query: \""),
    ("config.precision", "fp8", "config.precision: input should be 'fp32', 'bf16', 'fp16' or 'int8', it holds "
                                "\"fp8\""),
    ("rows", "6", "rows: input should be a valid integer, it holds \"6\""),
])
def test_each_field_of_index_json_is_checked_on_load(built, tmp_path, capsys, field, value, said):
    folder = copy_of(built, tmp_path)
    edited(field, value)(folder / "index.json")
    capsys.readouterr()
    assert main(search_args(folder, "the cat")) == 2
    one_error_line(capsys, f"{folder}: index.json is damaged or incomplete ({said}); rebuild the index")


def test_offsets_past_the_documents_are_one_line_not_a_memory_error(built, tmp_path, capsys):
    import numpy as np

    folder = copy_of(built, tmp_path)
    offsets = np.load(folder / "offsets.npy")
    offsets[-1] = 2**62  # a row "ending" past any file
    np.save(folder / "offsets.npy", offsets)
    capsys.readouterr()
    assert main(search_args(folder, "the cat")) == 2
    one_error_line(capsys, f"{folder}: offsets.npy or documents.jsonl is damaged or incomplete (the offsets do not "
                           "split the")


@pytest.mark.parametrize(("name", "damage"), [("embeddings.f32", cut),
                                              ("encode-progress.json", lambda path: path.write_text("[1, 2"))])
def test_resume_of_a_damaged_index_folder_is_one_line(built, model_copy, corpus, tmp_path, capsys, name, damage):
    folder = copy_of(built, tmp_path)
    damage(folder / name)
    capsys.readouterr()
    assert main(index_args(model_copy, corpus, folder, "--resume")) == 2
    one_error_line(capsys, f"{folder}: {name} is damaged or incomplete")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_folders_of_another_command_and_empty_commands_are_one_line(built, model_copy, corpus, tiny_data_dir,
                                                                   tmp_path, capsys):
    folder = copy_of(built, tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "record.json").write_text('{"status": "incomplete"}')
    cases = [
        (["finetune", "--model", str(model_copy), "--data-dir", str(tiny_data_dir), "--output-dir", str(folder),
          "--device", "cpu", "--resume"], f"--resume: {folder} is an index folder (made by `sbert-repro index`), "
                                          "not a run; continue it with `sbert-repro index --resume`"),
        (index_args(model_copy, corpus, run, "--resume"), f"--output-dir {run}: not an index folder"),
        (["evaluate", "--model", str(model_copy), "--data-dir", str(tiny_data_dir), "--output-dir",
          str(tmp_path / "eval"), "--sts-tasks", "none", "--retrieval-tasks", "none"],
         "--sts-tasks none --retrieval-tasks none: nothing to evaluate; name at least one task"),
        (search_args(folder, "the cat", "  "), "query 2 on the command line is blank; give each query some text"),
        (["finetune", "--model", str(model_copy), "--data-dir", str(tiny_data_dir), "--output-dir",
          str(tmp_path / "ft"), "--device", "cpu", "--max-seq-length", "100"],
         "--max-seq-length 100: the model has only 64 positions; give at most that"),
        (index_args(model_copy, corpus, tmp_path / "new", "--index", "IDMap,Flat"), "IDMap indexes need ids"),
        (index_args(model_copy, corpus, tmp_path / "new", "--index", "LSH"), "faiss cannot build it"),
        (index_args(model_copy, corpus, tmp_path / "new", "--index", "PQ3"),
         "should be a multiple of the number of subquantizers"),
    ]
    capsys.readouterr()
    for args, message in cases:
        assert main(args) == 2, args
        one_error_line(capsys, message)
    assert not (tmp_path / "new").exists() and not (tmp_path / "ft").exists()


def test_vectors_that_are_not_numbers_never_reach_the_index(model_copy, corpus, tmp_path, capsys):
    """A model that overflows (fp16) or has damaged weights gives NaN vectors: they stop the encode, naming the first
    row, before anything is indexed; here the word "rain" has a NaN embedding."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    damaged = Path(shutil.copytree(model_copy, tmp_path / "damaged"))
    weights = load_file(damaged / "model.safetensors")
    name = next(name for name in weights if name.endswith("word_embeddings.weight"))
    weights[name][AutoTokenizer.from_pretrained(damaged).convert_tokens_to_ids("rain")] = float("nan")
    save_file(weights, damaged / "model.safetensors", metadata={"format": "pt"})
    assert main(index_args(damaged, corpus, tmp_path / "idx")) == 2
    one_error_line(capsys, "embeddings.f32: row 2 ('we like the rain') encodes to NaN or infinities; the model ")
    assert not list(tmp_path.rglob("index.json"))


# ----------------------------------------------------------------------------- full disks

def test_a_disk_too_small_for_the_index_is_refused_before_encoding_with_the_bytes_needed(model_copy, corpus, tmp_path,
                                                                                          capsys, monkeypatch):
    # 6 rows x 32 dims: 768 bytes of vectors; an HNSW8 index holds them again with its links (208 bytes a row)
    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    assert main(index_args(model_copy, corpus, tmp_path / "idx", "--index", "HNSW8")) == 2
    line = one_error_line(capsys, f"--output-dir {tmp_path / 'idx'}: the index needs 2.02 KB more (embeddings.f32 "
                                  "768 bytes, index.faiss 1.25 KB; documents.jsonl, ")
    assert line.endswith("is written) and the disk has 1.00 KB free; free some space or choose another --output-dir")
    assert list(tmp_path.iterdir()) == []  # nothing half-made, nothing beside it


def test_a_disk_too_small_for_the_corpus_text_is_refused_before_copying_it(model_copy, corpus, tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 100))
    assert main(index_args(model_copy, corpus, tmp_path / "idx")) == 2
    one_error_line(capsys, f"--output-dir {tmp_path / 'idx'}: the corpus's text needs about "
                           f"{corpus.stat().st_size} bytes (corpus.jsonl) and the disk has 100 bytes free")
    assert list(tmp_path.iterdir()) == []


def test_embeddings_get_their_disk_space_before_encoding(model_copy, corpus, tmp_path, capsys, monkeypatch):
    def full(fd: int, offset: int, length: int) -> None:  # another process filled the disk since the check
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.os, "posix_fallocate", full)
    assert main(index_args(model_copy, corpus, tmp_path / "idx", "--overwrite")) == 2
    one_error_line(capsys, f"{tmp_path / '.idx.staging' / 'embeddings.f32'}: cannot write it (the disk is full)")
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fills_up_while_writing_is_one_line_and_leaves_no_debris(model_copy, corpus, tmp_path,
                                                                             capsys, monkeypatch):
    def full(path: Path, value: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(index_run, "write_json_atomic", full)
    assert main(index_args(model_copy, corpus, tmp_path / "idx")) == 2
    one_error_line(capsys, f"{tmp_path / 'idx' / 'index.json'}: cannot write it (the disk is full); free some space")
    assert not any(p.name.endswith((".tmp", ".new")) or p.name.startswith(".") for p in tmp_path.rglob("*"))


def test_a_record_that_cannot_be_written_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    def read_only(fd: int) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(records.os, "fsync", read_only)
    with pytest.raises(UsageError, match="record.json: cannot write it \\(the file system is read-only\\)"):
        records.write_json_atomic(tmp_path / "record.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_anywhere_else_is_one_line_and_the_staged_run_is_gone(model_copy, tiny_data_dir, tmp_path,
                                                                           capsys, monkeypatch):
    from sbert_repro.pipeline import evaluate_run

    def full(*args: object, **kwargs: object) -> None:  # as saving a model or a checkpoint would fail
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "model.safetensors")

    monkeypatch.setattr(evaluate_run, "evaluate_tasks", full)
    assert main(["evaluate", "--model", str(model_copy), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(tmp_path / "run"), "--sts-tasks", "stsb", "--retrieval-tasks", "none", "--device", "cpu"]) == 2
    one_error_line(capsys, "model.safetensors: cannot write it (the disk is full); free some space")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- output safety

def test_search_output_cannot_drive_the_terminal(built, capsys):
    capsys.readouterr()
    assert main(search_args(built, "--top-k", "6", "the cat")) == 0
    table = capsys.readouterr().out
    assert not any(char in table for char in "\x1b\x07\x9b\u202e") and len(table.splitlines()) == 7
    assert "doc-\ufffd]0;pwned\ufffd" in table and "the cat \ufffd[2J\ufffd31m\ufffdevil line" in table
    assert main(search_args(built, "--top-k", "6", "--json", "the cat")) == 0
    line = capsys.readouterr().out.strip()
    assert not any(char in line for char in "\x1b\x07\x9b\u202e\n")
    assert "\\u001b[2J\\u009b31m\\u202eevil\\nline" in line
    assert "the cat \x1b[2J\x9b31m\u202eevil\nline" in [hit["text"] for hit in json.loads(line)["hits"]]


def test_search_into_a_pipe_closed_early_ends_quietly(built, tmp_path):
    """`sbert-repro search ... | head -1`: head leaves after one line; the rest of the output meets a closed pipe."""
    import subprocess
    import sys

    queries = tmp_path / "queries.txt"
    queries.write_text("".join(f"we like the cat number {n}\n" for n in range(3000)))
    search = [sys.executable, "-m", "sbert_repro.cli.main", *search_args(built, "--queries-file", str(queries))]
    with subprocess.Popen(search, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}) as process:
        assert process.stdout.readline()  # one line read, then the reader goes away
        process.stdout.close()
        err = process.stderr.read()
    assert process.returncode == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


# ----------------------------------------------------------------------------- a model's whole setup

def saved_with_modules(tiny_model_dir: Path, folder: Path) -> Path:
    """The tiny model saved as sentence-transformers saves one: modules.json, 1_Pooling/config.json (mean)."""
    from sbert_repro.model.encoder import build_model

    build_model(str(tiny_model_dir), "mean", "cpu").save(str(folder))
    return folder


def test_a_pooling_changed_at_the_same_path_is_refused_by_resume_and_search(tiny_model_dir, corpus, tmp_path,
                                                                           capsys):
    model = saved_with_modules(tiny_model_dir, tmp_path / "model")
    folder = tmp_path / "idx"
    assert main(index_args(model, corpus, folder)) == 0
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config["pooling_mode"] = "cls"
    pooling.write_text(json.dumps(config))
    before = contents(folder)
    progress = json.loads((folder / "encode-progress.json").read_text())
    (folder / "encode-progress.json").write_text(json.dumps({**progress, "done": 4}))  # as a killed encode left it
    before["encode-progress.json"] = (folder / "encode-progress.json").read_bytes()
    capsys.readouterr()
    assert main(index_args(model, corpus, folder, "--resume")) == 2
    one_error_line(capsys, "the encode there was of another corpus or setup (modules, modules_sha256 differ; modules: "
                           "encoded Transformer, Pooling(mean), now Transformer, Pooling(cls))")
    assert contents(folder) == before  # embeddings.f32 byte for byte
    (folder / "encode-progress.json").write_text(json.dumps(progress))
    assert main(search_args(folder, "the cat")) == 2
    one_error_line(capsys, f"its modules are not those {folder} was encoded with (modules: index Transformer, "
                           "Pooling(mean), now Transformer, Pooling(cls))")


def test_an_index_that_records_no_module_fingerprint_is_searched_with_one_warning(built, tmp_path, caplog):
    folder = copy_of(built, tmp_path)
    meta = json.loads((folder / "index.json").read_text())
    del meta["modules_sha256"]
    (folder / "index.json").write_text(json.dumps(meta))
    assert main(search_args(folder, "the cat")) == 0
    assert [record.message for record in caplog.records if "records no fingerprint of the model's modules" in
            record.message] != []


def test_an_output_dir_linked_to_a_folder_not_yet_made_is_made_where_the_link_points(tiny_model_dir, corpus,
                                                                                     tmp_path, capsys):
    link = tmp_path / "idx"
    link.symlink_to(tmp_path / "indexes" / "cats")  # neither folder exists yet
    assert main(index_args(tiny_model_dir, corpus, link)) == 0
    assert link.is_symlink() and (tmp_path / "indexes" / "cats" / "index.json").is_file()
    capsys.readouterr()
    assert main(search_args(link, "--json", "the cat")) == 0
    assert "doc-cat" in capsys.readouterr().out
