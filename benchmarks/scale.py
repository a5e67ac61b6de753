"""A corpus of millions on this machine: wall time and peak memory of `evaluate` (exact search), `index` (Flat and
IVF-PQ) and `search` (cold and warm) as a synthetic BEIR task grows from 100k to 1M short documents. Not part of the
test suite.

    python benchmarks/scale.py --output-dir runs/scale-2cpu
    python scripts/make_tables.py --add runs/scale-2cpu          # -> results/scale.md and its plot

The documents are 8 words each, drawn (seeded) from a vocabulary of 2,000 with Zipf-like frequencies; each of the
100 queries is 4 words of one document, which is its one relevant document. The model is a random BERT of 2 layers
and 64 dimensions with that vocabulary, so that a size takes minutes on 2 cores: what is measured is how time and
memory grow with the corpus, not what a real model scores. Each command runs in a process of its own, as a user
runs it; its peak memory is sampled from /proc as resident (all pages it maps, the page cache of a memory-mapped
file included) and private (its own memory: what the kernel cannot take back by dropping file pages).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sbert_repro.runs.environment import environment
from sbert_repro.runs.records import SCALE_KIND, create_run_dir, write_record

WORDS, DOCUMENT_WORDS, QUERY_WORDS, DIM, LAYERS = 2000, 8, 4, 64, 2
COMMAND = [sys.executable, "-c", "import sys; from sbert_repro.cli.main import main; sys.exit(main(sys.argv[1:]))"]


def make_model(folder: Path, seed: int) -> Path:
    """A random BERT of LAYERS layers and DIM dimensions whose vocabulary is the corpus's words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    # a few English words too: a model whose tokenizer knows no English is refused as a wrong tokenizer
    english = ["the", "a", "cat", "is", "here", "and", "we", "like", "it", ",", "."]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *english, *(f"w{i}" for i in range(WORDS))]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=DIM, num_hidden_layers=LAYERS, num_attention_heads=2,
                         intermediate_size=2 * DIM, max_position_embeddings=32)).save_pretrained(folder)
    return folder


def make_task(folder: Path, rows: int, queries: int, seed: int) -> Path:
    """A BEIR folder of `rows` documents, `queries` queries (each 4 words of one document) and their judgements."""
    rng = np.random.default_rng(seed)
    frequency = 1.0 / np.arange(1, WORDS + 1)
    words = rng.choice(WORDS, size=(rows, DOCUMENT_WORDS), p=frequency / frequency.sum())
    folder.mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for start in range(0, rows, 100_000):
            corpus.writelines(f'{{"_id": "d{start + i}", "title": "", "text": "{" ".join(f"w{w}" for w in row)}"}}\n'
                              for i, row in enumerate(words[start:start + 100_000]))
    judged = rng.choice(rows, size=queries, replace=False)
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as file:
        for n, row in enumerate(judged):
            picked = rng.choice(DOCUMENT_WORDS, size=QUERY_WORDS, replace=False)
            file.write(json.dumps({"_id": f"q{n}", "text": " ".join(f"w{w}" for w in words[row][picked])}) + "\n")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{n}\td{row}\t1\n" for n, row in enumerate(judged)))
    return folder


def measured(argv: list[str], stdout: Path | None = None) -> dict[str, float]:
    """`sbert-repro ARGV` in a process of its own: wall seconds, and its peak resident and private memory (bytes),
    sampled every 20 ms from /proc (resident also from the kernel's own high-water mark)."""
    start = time.perf_counter()
    with open(stdout or os.devnull, "wb") as out:
        process = subprocess.Popen([*COMMAND, *argv], stdout=out, stderr=subprocess.PIPE)
    peak_private = peak_resident = 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            break
        fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines()
                  if line.startswith(("RssAnon", "VmHWM"))}
        peak_private = max(peak_private, 1024 * int(fields.get("RssAnon", 0)))
        peak_resident = max(peak_resident, 1024 * int(fields.get("VmHWM", 0)))
        time.sleep(0.02)
    said = process.stderr.read().decode(errors="replace").strip().splitlines() if process.stderr else []
    if process.wait() != 0:
        raise SystemExit(f"scale benchmark: `sbert-repro {' '.join(argv)}` exited with {process.returncode}: "
                         f"{said[-1] if said else ''}")
    return {"wall_s": time.perf_counter() - start, "peak_resident_bytes": peak_resident,
            "peak_private_bytes": peak_private}


def evict(folder: Path) -> None:
    """Drop folder's files from the page cache, so that the next search reads them from disk (cold)."""
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as file:
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def ivf_pq(rows: int) -> str:
    """IVF-PQ with about 4 x sqrt(rows) lists (a power of two) and 16-byte codes."""
    return f"IVF{2 ** round(np.log2(4 * np.sqrt(rows)))},PQ16"


def one_size(rows: int, model: Path, work: Path, args: argparse.Namespace) -> list[dict]:
    """Every command's point at one corpus size."""
    task = make_task(work / f"synthetic-{rows}", rows, args.queries, args.seed)
    texts = [json.loads(line)["text"] for line in (task / "queries.jsonl").read_text().splitlines()]
    (work / "queries.txt").write_text("\n".join(texts) + "\n")
    batch = ["--device", "cpu"]
    points = []

    def point(command: str, index: str | None, argv: list[str], own_s: float | None = None, **more: object) -> dict:
        return {"rows": rows, "command": command, "index": index, **measured(argv), "own_s": own_s, **more}

    evaluate_dir = work / f"evaluate-{rows}"
    found = point("evaluate", "Flat", ["evaluate", "--model", str(model), "--retrieval-tasks", str(task),
                                       "--sts-tasks", "none", "--output-dir", str(evaluate_dir),
                                       "--eval-batch-size", str(args.batch_size), *batch])
    record = json.loads((evaluate_dir / "record.json").read_text())
    found["own_s"], found["ndcg@10"] = record["wall_seconds"], record["scores"][f"{task.name}/ndcg@10"]
    points.append(found)
    index_dir = work / f"index-{rows}"
    for factory in ("Flat", ivf_pq(rows)):
        # IVF-PQ: the same vectors indexed again without encoding, 16 of its lists probed
        resume = ["--resume", "--nprobe", "16"] if factory != "Flat" else []
        found = point("index", factory, ["index", "--model", str(model), "--corpus", str(task), "--output-dir",
                                         str(index_dir), "--index", factory, "--eval-batch-size", str(args.batch_size),
                                         *resume, *batch])
        meta = json.loads((index_dir / "index.json").read_text())
        found["own_s"] = sum(meta["timings"].values())
        found["bytes_per_vector"] = meta["self_check"]["bytes_per_vector"]
        found["recall@10_vs_exact"] = meta["self_check"]["recall@10_vs_exact"]
        points.append(found)
        for state in ("cold", "warm"):
            if state == "cold":
                evict(index_dir)
            points.append(point("search", factory, ["search", "--index-dir", str(index_dir), "--queries-file",
                                                    str(work / "queries.txt"), "--json", *batch], state=state))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="scratch space for the corpora, vectors and indexes (default: a temporary folder)")
    args = parser.parse_args()
    run_environment = environment("cpu")
    run_dir = create_run_dir(args.output_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.work_dir) as scratch:
        work = Path(scratch)
        model = make_model(work / "model", args.seed)
        points = []
        for rows in args.sizes:
            points += one_size(rows, model, work, args)
            print(f"{rows:,} documents measured ({time.perf_counter() - started:.0f} s so far)", flush=True)
    record = {"kind": SCALE_KIND,
              "config": {**{key: value for key, value in vars(args).items() if key not in ("output_dir", "work_dir")},
                         "model": f"random BERT, {LAYERS} layers, {DIM} dims, {WORDS:,}-word vocabulary",
                         "output_dir": str(args.output_dir), "argv": sys.argv[1:]},
              "environment": run_environment,
              "corpus": {"document_words": DOCUMENT_WORDS, "query_words": QUERY_WORDS, "vocabulary": WORDS,
                         "dim": DIM},
              "points": points, "wall_seconds": time.perf_counter() - started}
    write_record(run_dir / "record.json", record)
    print(f"{run_dir}/record.json written; add it with scripts/make_tables.py --add {run_dir}")


if __name__ == "__main__":
    main()
