"""A corpus too large to hold: `evaluate` and hard-negative mining keep a retrieval task's memory to its vectors and
a bounded working set, reading the text by offsets and encoding to disk chunk by chunk, where holding the text alone
would pass the bound.
The large sizes (100k to 1M documents, an index, a search) are benchmarks/scale.py's; this is the suite's check."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import VOCAB_WORDS, write_jsonl

DOCUMENTS, DIM = 100_000, 32  # the tiny model's vectors have 32 dimensions
# Each document: 4 words of the tiny model's vocabulary and 2 of 150 hex digits. Those are text to hold (320 bytes a
# document) that costs nothing to encode: longer than 100 characters, a word is one unknown token, as BERT's
# WordPiece reads it, and no document is encoded past its first 8 tokens.
WORDS, LONG_WORD = 4, 150
# What evaluate may hold beyond the float32 vectors: each document's id and offsets, and a working set that does
# not grow with the corpus (a chunk of 8,192 texts and their batches, a 65,536-row slice of the search).
PER_DOCUMENT, WORKING_SET = 200, 40 * 2**20

DRIVER = """
import json, sys
from sbert_repro.cli.main import main


def peak_since(reset):
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return 1024 * int(status["VmHWM"].split()[0]) - reset


def reset():  # the peak resident memory starts again from what is resident now
    open("/proc/self/clear_refs", "w").write("5")
    return peak_since(0)


model, small, large, out = sys.argv[1:5]
common = ["--model", model, "--sts-tasks", "none", "--device", "cpu", "--eval-max-seq-length", "8",
          "--eval-batch-size", "256"]
# imports, threads and allocator arenas first, on a small corpus: what is measured after is the corpus's
assert main(["evaluate", *common, "--retrieval-tasks", small, "--output-dir", out + "/warm-up"]) == 0
base = reset()
assert main(["evaluate", *common, "--retrieval-tasks", large, "--output-dir", out + "/large"]) == 0
evaluate = peak_since(base)
base = reset()  # mining hard negatives over the same corpus, with the same model
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.corpus import read_corpus_file
from sbert_repro.data.retrieval_pairs import RetrievalPairs
from sbert_repro.model.encoder import build_model
from sbert_repro.train.mining import mine_negatives
encoder = build_model(model, "mean", "cpu")
encoder.max_seq_length = 8
corpus = read_corpus_file(large + "/corpus.jsonl")
judged = [line.split("\t")[1] for line in open(large + "/qrels/test.tsv").read().splitlines()[1:]]
queries = [json.loads(line)["text"] for line in open(large + "/queries.jsonl")]
pairs = RetrievalPairs(queries, [corpus[doc_id]["text"] for doc_id in judged], "large", document_ids=judged)
config = TrainConfig(objective="retrieval", hard_negatives=1, negative_margin=0.0, eval_batch_size=256)
mined, stats = mine_negatives(pairs, corpus, encoder, config, None)
assert len(mined.negatives) == len(pairs), stats
mining = peak_since(base)
del corpus, mined, encoder
base = reset()  # the same corpus held as text, as BEIR's loader holds it, and the list encoding it would take
from sbert_repro.data.loaders import _corpus
from sbert_repro.data.sources import file_rows
held = _corpus(file_rows(large + "/corpus.jsonl"), "corpus")
texts = [document["title"] + " " + document["text"] for document in held.values()]
print(json.dumps({"evaluate": evaluate, "mining": mining, "text": peak_since(base)}))
"""


def synthetic_task(folder: Path, documents: int, seed: int) -> Path:
    """A BEIR folder: `documents` of WORDS words from the tiny model's vocabulary and two long ones, and 50 queries
    each judging one."""
    draw = random.Random(seed)

    def long_word() -> str:
        return draw.randbytes(LONG_WORD // 2).hex()

    write_jsonl(folder / "corpus.jsonl", [{"_id": f"doc{i}", "title": "", "text": " ".join(
        [*draw.choices(VOCAB_WORDS, k=WORDS), long_word(), long_word()])} for i in range(documents)])
    judged = draw.sample(range(documents), min(50, documents))
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": " ".join(draw.choices(VOCAB_WORDS, k=4))}
                                           for i in range(len(judged))])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\tdoc{row}\t1\n" for i, row in enumerate(judged)))
    return folder


def whitespace_tokenized(model: Path, folder: Path) -> Path:
    """A copy of the tiny model whose tokenizer splits on whitespace, with the same ids: BERT's normaliser reads
    every character of a long word (most of this test's time), and the memory measured is scoring's, not a
    tokenizer's."""
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    shutil.copytree(model, folder)
    vocab = AutoTokenizer.from_pretrained(folder).get_vocab()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    return folder


def test_evaluate_and_mining_hold_the_vectors_and_a_bounded_working_set_where_the_text_would_not_fit(
        tiny_model_dir: Path, tmp_path: Path):
    tiny_model_dir = whitespace_tokenized(tiny_model_dir, tmp_path / "model")
    small, large = synthetic_task(tmp_path / "small", 300, 1), synthetic_task(tmp_path / "large", DOCUMENTS, 2)
    answer = subprocess.run([sys.executable, "-c", DRIVER, str(tiny_model_dir), str(small), str(large),
                             str(tmp_path / "runs")], capture_output=True, text=True, timeout=300)
    assert answer.returncode == 0, answer.stderr[-3000:]
    peaks = json.loads(answer.stdout.strip().splitlines()[-1])
    bound = 1.25 * DOCUMENTS * DIM * 4 + PER_DOCUMENT * DOCUMENTS + WORKING_SET
    assert peaks["text"] > bound, peaks  # the premise: the text held whole would not fit the bound by itself
    assert peaks["evaluate"] <= bound and peaks["mining"] <= bound, peaks
    record = json.loads((tmp_path / "runs" / "large" / "record.json").read_text())
    assert 0 <= record["scores"]["large/ndcg@10"] <= 100 and not (tmp_path / "runs" / "large" / "vectors").exists()


# ----------------------------------------------------------------------------- several GPUs, mocked

def model_on_two_mocked_gpus(tiny_model_dir: Path, monkeypatch) -> tuple[object, list]:
    """The tiny model on a machine that says it has 2 GPUs, whose pool starts nothing: the model, and the list of
    what was started (each pool's devices) and "stopped"."""
    from sbert_repro.model.encoder import build_model
    from sbert_repro.search import store

    model = build_model(str(tiny_model_dir), "mean", "cpu")
    started = []
    monkeypatch.setattr(store, "_cuda_count", lambda: 2)
    monkeypatch.setattr(model, "start_multi_process_pool", lambda devices: started.append(devices) or {
        "processes": [object() for _ in devices]})
    monkeypatch.setattr(model, "stop_multi_process_pool", lambda pool: started.append("stopped"))
    return model, started


def test_several_gpus_encode_through_the_pool_in_chunks_that_grow_with_them(tiny_model_dir: Path, tmp_path: Path,
                                                                           monkeypatch):
    import numpy as np

    from sbert_repro.search import store

    model, started = model_on_two_mocked_gpus(tiny_model_dir, monkeypatch)
    calls = []

    def encode_document(texts, pool=None, chunk_size=None, **options):
        calls.append((len(texts), pool is not None, chunk_size))
        return np.ones((len(texts), 32), dtype=np.float32)

    monkeypatch.setattr(model, "encode_document", encode_document)
    with store.encoding_pool(model, 1, "cuda") as pool:
        store.encode_to_disk(model, tmp_path, 20_000, {"corpus": "c"}, 64, 8192, pool,
                             texts=lambda start, stop: ["text"] * (stop - start))
    assert started == [["cuda:0", "cuda:1"], "stopped"]
    # 2 GPUs: chunks of 2 x 8,192 rows, each cut in 4 pieces a GPU by sentence-transformers
    assert calls == [(16384, True, 2048), (3616, True, 452)]
    calls.clear()
    with store.encoding_pool(model, 1, "cpu") as pool:  # the CPU: no pool, chunks as given
        (tmp_path / "cpu").mkdir()
        store.encode_to_disk(model, tmp_path / "cpu", 10_000, {"corpus": "c"}, 64, 8192, pool,
                             texts=lambda start, stop: ["text"] * (stop - start))
    assert pool is None and calls == [(8192, False, None), (1808, False, None)]


def test_mining_on_several_gpus_encodes_through_sentence_transformers_pool(tiny_model_dir: Path, tmp_path: Path,
                                                                           monkeypatch):
    from sbert_repro.config.training import TrainConfig
    from sbert_repro.data.retrieval_pairs import RetrievalPairs
    from sbert_repro.train import mining

    model, started = model_on_two_mocked_gpus(tiny_model_dir, monkeypatch)
    pooled = []
    encode_document = model.encode_document

    def encode_in_pool(texts, pool=None, chunk_size=None, **options):  # the pool's answer, computed here
        pooled.append(pool is not None)
        return encode_document(texts, **options)

    monkeypatch.setattr(model, "encode_document", encode_in_pool)
    corpus = {f"d{i}": {"title": "", "text": f"we like the {word}"} for i, word in enumerate(["cat", "dog", "soup"])}
    pairs = RetrievalPairs(["look at that cat"], ["we like the cat"], "test", document_ids=["d0"])
    for device, pool in (("cuda", [["cuda:0", "cuda:1"], "stopped"]), ("cpu", [])):
        started.clear(), pooled.clear()
        config = TrainConfig(objective="retrieval", device=device, hard_negatives=1, negative_margin=0.0)
        mined, _ = mining.mine_negatives(pairs, corpus, model, config, tmp_path / device)
        assert started == pool and pooled == [device == "cuda"] and len(mined.negatives[0]) == 1


# ----------------------------------------------------------------------------- the corpus read by offsets

def test_a_corpus_file_is_read_back_by_offsets_as_the_loader_read_it(tmp_path: Path):
    from sbert_repro.data.corpus import FileCorpus, corpus_texts
    from sbert_repro.data.loaders import read_beir_folder
    from sbert_repro.errors import UsageError

    folder = synthetic_task(tmp_path / "task", 30, 3)
    corpus_file = folder / "corpus.jsonl"
    lines = corpus_file.read_text().splitlines()
    lines[0] = '\ufeff{"_id": "doc0", "title": "T\\u00e9", "text": "caf\u00e9"}'  # a byte-order mark, UTF-8
    corpus_file.write_text("\n\n".join(lines) + "\n", encoding="utf-8")  # blank lines between rows
    data = read_beir_folder(folder, "test", "task")
    assert isinstance(data.corpus, FileCorpus) and len(data.corpus) == 30 and "doc29" in data.corpus
    assert data.corpus["doc0"] == {"title": "Té", "text": "café"}
    rows = [json.loads(line.removeprefix("\ufeff")) for line in lines]
    assert corpus_texts(data.corpus, 0, 30) == [(row.get("title", "") + " " + row["text"]).strip() for row in rows]
    assert corpus_texts(data.corpus, 5, 7) == corpus_texts(dict(data.corpus.items()), 5, 7)
    corpus_file.write_text("")  # changed under a running command: one line, not a JSON traceback
    with pytest.raises(UsageError, match="corpus.jsonl: changed since it was read"):
        corpus_texts(data.corpus, 0, 30)


def test_evaluate_refuses_a_disk_too_small_for_a_tasks_vectors_before_encoding(tiny_model_dir: Path,
                                                                               tiny_data_dir: Path, tmp_path: Path,
                                                                               capsys, monkeypatch):
    import shutil

    from sbert_repro.cli.main import main
    from sbert_repro.search import store

    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 100))
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(out), "--sts-tasks", "none", "--retrieval-tasks", "scifact", "--device", "cpu"]) == 2
    # 24 documents x 32 dimensions x 4 bytes
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"sbert-repro: error: --output-dir {out}: scoring needs 3.07 KB more (scifact's vectors 3.07 KB) and the "
        "disk has 100 bytes free; free some space or choose another --output-dir")
    assert not out.exists()


def test_finetune_scores_retrieval_through_the_encode_to_disk_and_leaves_no_vectors(tiny_model_dir: Path,
                                                                                    tiny_data_dir: Path,
                                                                                    tmp_path: Path, monkeypatch):
    from sbert_repro.cli.main import main
    from sbert_repro.evaluation import scoring

    encoded, real = [], scoring.encode_to_disk

    def counted(model, folder, rows, *args, **kwargs):
        encoded.append((folder.parent.parent.name, folder.name, rows))
        return real(model, folder, rows, *args, **kwargs)

    monkeypatch.setattr(scoring, "encode_to_disk", counted)
    out = tmp_path / "run"
    assert main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(out), "--epochs", "1", "--batch-size", "16", "--sts-tasks", "stsb", "--retrieval-tasks",
                 "scifact", "--device", "cpu", "--precision", "fp32"]) == 0
    assert encoded == [("baseline", "scifact", 24), ("run", "scifact", 24)]  # the raw model, then the trained one
    assert not list(out.rglob("vectors")) and not list(out.rglob("embeddings.f32"))
