"""A corpus too large to hold: `evaluate` keeps a retrieval task's memory to its vectors and a bounded working set,
reading the text by offsets and encoding to disk chunk by chunk, where holding the text alone would pass the bound.
The large sizes (100k to 1M documents, an index, a search) are benchmarks/scale.py's; this is the suite's check."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from conftest import VOCAB_WORDS, write_jsonl

DOCUMENTS, DIM = 120_000, 32  # the tiny model's vectors have 32 dimensions
# Each document: 4 words of the tiny model's vocabulary and 2 of 120 hex digits. Those are text to hold (250 bytes a
# document) that costs nothing to encode: longer than 100 characters, a word is one unknown token, as BERT's
# WordPiece reads it, and no document is encoded past its first 8 tokens.
WORDS, LONG_WORD = 4, 120
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
base = reset()  # the same corpus held as text, as BEIR's loader holds it, and the list encoding it would take
from sbert_repro.data.loaders import _corpus
from sbert_repro.data.sources import file_rows
held = _corpus(file_rows(large + "/corpus.jsonl"), "corpus")
texts = [document["title"] + " " + document["text"] for document in held.values()]
print(json.dumps({"evaluate": evaluate, "text": peak_since(base)}))
"""


def synthetic_task(folder: Path, documents: int, seed: int) -> Path:
    """A BEIR folder: `documents` of WORDS words from the tiny model's vocabulary and two long ones, and 50 queries
    each judging one."""
    draw = random.Random(seed)

    def long_word() -> str:
        return draw.randbytes(LONG_WORD // 2).hex()

    write_jsonl(folder / "corpus.jsonl", [{"_id": f"doc{i}", "title": "", "text": " ".join(
        [*draw.choices(VOCAB_WORDS, k=WORDS), long_word(), long_word()])} for i in range(documents)])
    judged = draw.sample(range(documents), 50)
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": " ".join(draw.choices(VOCAB_WORDS, k=4))}
                                           for i in range(len(judged))])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\tdoc{row}\t1\n" for i, row in enumerate(judged)))
    return folder


def test_evaluate_holds_the_vectors_and_a_bounded_working_set_where_holding_the_text_would_not_fit(
        tiny_model_dir: Path, tmp_path: Path):
    small, large = synthetic_task(tmp_path / "small", 2000, 1), synthetic_task(tmp_path / "large", DOCUMENTS, 2)
    answer = subprocess.run([sys.executable, "-c", DRIVER, str(tiny_model_dir), str(small), str(large),
                             str(tmp_path / "runs")], capture_output=True, text=True, timeout=300)
    assert answer.returncode == 0, answer.stderr[-3000:]
    peaks = json.loads(answer.stdout.strip().splitlines()[-1])
    bound = 1.25 * DOCUMENTS * DIM * 4 + PER_DOCUMENT * DOCUMENTS + WORKING_SET
    assert peaks["text"] > bound, peaks  # the premise: the text held whole would not fit the bound by itself
    assert peaks["evaluate"] <= bound, peaks
    record = json.loads((tmp_path / "runs" / "large" / "record.json").read_text())
    assert 0 <= record["scores"]["large/ndcg@10"] <= 100 and not (tmp_path / "runs" / "large" / "vectors").exists()
