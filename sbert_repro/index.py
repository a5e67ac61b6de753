"""Retrieval at scale: FAISS indexes beyond exact search, their recall against it, and a saved index of a
corpus that was encoded to disk in resumable chunks.

An index is named by a faiss index_factory string: "Flat" (exact), "IVF4096,Flat", "HNSW32",
"IVF4096,PQ64", "OPQ64,IVF4096,PQ64", ... Vectors are L2-normalised and scored by inner product, which
on them is cosine. IVF and PQ indexes are trained on a random sample of the vectors.

An index folder (`sbert-repro index`) holds:
    documents.jsonl        {"_id", "text"} per row, in row order (search answers with the text)
    offsets.npy            byte offset of each row in documents.jsonl, and of its end
    embeddings.f32         (rows, dim) float32, memory-mapped: written chunk by chunk, never all in memory
    encode-progress.json   rows encoded so far, and of which corpus and model: a killed encode resumes
    index.faiss            the index (row ids = rows of documents.jsonl)
    index.json             how it was built (model, index, timings) and its recall against exact search
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from sbert_repro import progress
from sbert_repro.config import RunConfig, SearchConfig, check_index_options
from sbert_repro.data import iter_corpus
from sbert_repro.errors import UsageError
from sbert_repro.folders import check_not_busy, fresh_staging, kill_point, locked, removed_on_failure, swap_in
from sbert_repro.model import build_model, eval_max_seq_length, for_inference, resolve_device, resolve_precision
from sbert_repro.records import environment, write_json_atomic

logger = logging.getLogger(__name__)

EXACT = "Flat"
RECALL_DEPTH = 10  # approximate search is judged by recall@10 against exact search
SELF_CHECK_QUERIES = 1000  # corpus vectors used as queries to measure a built index's recall


# ----------------------------------------------------------------------------- indexes

def _faiss_reason(error: RuntimeError) -> str:
    """faiss's own words, without the C++ location it prefixes them with."""
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: '.*?' failed: )?", "", str(error).strip()).rstrip(".")


def empty_index(factory: str, dim: int) -> faiss.Index:
    """The untrained, empty inner-product index an index_factory string names."""
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise UsageError(f"--index {factory!r}: faiss cannot build it ({_faiss_reason(error)}); give an "
                         "index_factory string such as Flat, IVF4096,Flat, HNSW32 or IVF4096,PQ64") from None


def check_trainable(factory: str, dim: int, rows: int, train_size: int) -> None:
    """Refuse before any encoding what build_index would refuse after it: a string faiss cannot parse, or
    more IVF lists than training vectors."""
    ivf = faiss.try_extract_index_ivf(empty_index(factory, dim))
    if ivf is not None and ivf.nlist > min(rows, train_size):
        raise UsageError(f"--index {factory!r}: {ivf.nlist} IVF lists need at least {ivf.nlist} training vectors, "
                         f"and this corpus gives {min(rows, train_size)}; use fewer lists (about 4 x sqrt(rows))")


def build_index(factory: str, embeddings: np.ndarray, train_size: int, seed: int,
                add_chunk: int = 65536) -> faiss.Index:
    """An inner-product index of `embeddings` (an array or a memmap), trained first if it needs training."""
    rows, dim = embeddings.shape
    index = empty_index(factory, dim)
    if not index.is_trained:
        sample = np.sort(np.random.default_rng(seed).choice(rows, size=min(train_size, rows), replace=False))
        try:
            index.train(np.ascontiguousarray(embeddings[sample], dtype=np.float32))
        except RuntimeError as error:
            raise UsageError(f"--index {factory!r}: training on {len(sample)} vectors failed ({_faiss_reason(error)}); "
                             "use fewer IVF lists, or more vectors (--train-size, a larger corpus)") from None
    # In slices: a memmap is read from disk a part at a time.
    for start in range(0, rows, add_chunk):
        index.add(np.ascontiguousarray(embeddings[start:start + add_chunk], dtype=np.float32))
    return index


def set_search_parameters(index: faiss.Index, nprobe: int | None, ef_search: int | None) -> dict[str, int]:
    """Set the search-time knobs that are given; returns every knob the index has, as it now stands."""
    space = faiss.ParameterSpace()
    for option, name, value in (("--nprobe", "nprobe", nprobe), ("--ef-search", "efSearch", ef_search)):
        if value is None:
            continue
        try:
            space.set_index_parameter(index, name, value)
        except RuntimeError:
            raise UsageError(f"{option}: this index has no {name} (nprobe is for IVF indexes, ef-search for "
                             "HNSW); leave the option out") from None
    return search_parameters(index)


def search_parameters(index: faiss.Index) -> dict[str, int]:
    """The index's search-time knobs: nprobe (IVF lists visited), efSearch (HNSW candidate list)."""
    found = {}
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        found["nprobe"] = int(ivf.nprobe)
    base = faiss.downcast_index(index.index if isinstance(index, faiss.IndexPreTransform) else index)
    if hasattr(base, "hnsw"):
        found["efSearch"] = int(base.hnsw.efSearch)
    return found


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS top-k: (scores, row ids), each (n_queries, k), best first; -1 ids where fewer exist."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, index.ntotal))


def timed_search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Scores and row ids of the top k, and queries answered per second."""
    start = time.perf_counter()
    scores, rows = search(index, queries, k)
    return scores, rows, len(queries) / max(time.perf_counter() - start, 1e-9)


def exact_search_in_slices(embeddings: np.ndarray, queries: np.ndarray, k: int, rows_per_slice: int = 1 << 16
                           ) -> tuple[np.ndarray, float]:
    """Exact top-k row ids over (memory-mapped) vectors, a slice at a time so they never all sit in memory
    at once, and queries answered per second."""
    start = time.perf_counter()
    best_scores = np.empty((len(queries), 0), dtype=np.float32)
    best_rows = np.empty((len(queries), 0), dtype=np.int64)
    for offset in range(0, len(embeddings), rows_per_slice):
        scores, rows = search(build_index(EXACT, embeddings[offset:offset + rows_per_slice], 0, 0), queries, k)
        scores, rows = np.hstack([best_scores, scores]), np.hstack([best_rows, rows + offset])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best_rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    return best_rows, len(queries) / max(time.perf_counter() - start, 1e-9)


def bytes_per_vector(index: faiss.Index) -> float:
    """The serialised index's size over the vectors it holds (codes, ids, lists and quantizers included)."""
    return faiss.serialize_index(index).size / max(index.ntotal, 1)


def recall_against_exact(approximate: np.ndarray, exact: np.ndarray, k: int = RECALL_DEPTH) -> float:
    """Mean share of exact search's top k that approximate search also returned in its top k."""
    shares = []
    for found, truth in zip(approximate[:, :k], exact[:, :k], strict=True):
        truth_set = {row for row in truth.tolist() if row >= 0}
        shares.append(len(truth_set & set(found.tolist())) / len(truth_set) if truth_set else 1.0)
    return float(np.mean(shares))


def build_timed(factory: str, embeddings: np.ndarray, train_size: int, seed: int) -> tuple[faiss.Index, float]:
    """build_index, and the seconds it took (training included)."""
    start = time.perf_counter()
    index = build_index(factory, embeddings, train_size, seed)
    return index, time.perf_counter() - start


def compare_with_exact(index: faiss.Index, queries: np.ndarray, exact_rows: np.ndarray, exact_per_s: float
                       ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Search `queries` with `index` as deep as `exact_rows` (exact search's answer); returns how close it came
    (recall@10 against exact), how fast (queries/s, beside exact's), its knobs, and its scores and row ids.
    Its size (bytes_per_vector) is left to the caller: serialising a large index per knob value costs more than
    searching it."""
    scores, rows, per_s = timed_search(index, queries, exact_rows.shape[1])
    return {"search_parameters": search_parameters(index), "queries_per_s": per_s, "exact_queries_per_s": exact_per_s,
            f"recall@{RECALL_DEPTH}_vs_exact": recall_against_exact(rows, exact_rows)}, scores, rows


# ----------------------------------------------------------------------------- corpora on disk

DOCUMENTS, OFFSETS, EMBEDDINGS = "documents.jsonl", "offsets.npy", "embeddings.f32"
PROGRESS, INDEX, INDEX_META = "encode-progress.json", "index.faiss", "index.json"


def write_documents(documents: Iterable[tuple[str, str]], folder: Path) -> tuple[int, str]:
    """Write (id, text) rows to folder/documents.jsonl and their offsets; returns (rows, sha256 of the rows).

    Written under temporary names and renamed at the end: a bad row (UsageError) leaves nothing behind.
    """
    digest = hashlib.sha256()
    offsets = [0]
    temporary = folder / f".{DOCUMENTS}.tmp"
    try:
        with open(temporary, "wb") as file:
            for doc_id, text in documents:
                line = (json.dumps({"_id": doc_id, "text": text}, ensure_ascii=False) + "\n").encode("utf-8")
                file.write(line)
                digest.update(line)
                offsets.append(offsets[-1] + len(line))
        np.save(folder / f".{OFFSETS}.tmp.npy", np.asarray(offsets, dtype=np.int64))
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(folder / f".{OFFSETS}.tmp.npy", folder / OFFSETS)
    os.replace(temporary, folder / DOCUMENTS)
    return len(offsets) - 1, digest.hexdigest()


def read_documents(folder: Path, rows: Iterable[int]) -> list[dict[str, str]]:
    """The {"_id", "text"} of the given rows of folder/documents.jsonl, read by seeking (not the whole file)."""
    offsets = np.load(folder / OFFSETS, mmap_mode="r")
    found = []
    with open(folder / DOCUMENTS, "rb") as file:
        for row in rows:
            file.seek(int(offsets[row]))
            found.append(json.loads(file.read(int(offsets[row + 1] - offsets[row]))))
    return found


@contextmanager
def encoding_pool(model: SentenceTransformer, processes: int, device: str):
    """sentence-transformers' multi-process pool: one process per visible GPU on CUDA when several are
    visible, else `processes` CPU processes sharing the cores; None when one process will do."""
    if device.startswith("cuda") and _cuda_count() > 1:
        devices = [f"cuda:{i}" for i in range(_cuda_count())]
    elif processes > 1:
        devices = ["cpu"] * processes
    else:
        yield None
        return
    # Each spawned process reads its thread count at start-up: split the cores rather than oversubscribe.
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(devices)))
    try:
        pool = model.start_multi_process_pool(devices)
    finally:
        os.environ.pop("OMP_NUM_THREADS") if threads is None else os.environ.update(OMP_NUM_THREADS=threads)
    try:
        yield pool
    finally:
        model.stop_multi_process_pool(pool)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def encode_to_disk(model: SentenceTransformer, folder: Path, rows: int, identity: dict[str, Any], batch_size: int,
                   chunk_size: int, pool: dict | None = None,
                   on_chunk: Callable[[int], None] | None = None) -> np.memmap:
    """Encode documents.jsonl's rows into folder/embeddings.f32 (L2-normalised float32), `chunk_size` rows at
    a time, recording after each chunk how far it got. Run again on the same folder with the same `identity`
    (corpus and model) it continues from there, in the chunks it began with; with another identity it refuses."""
    dim = model.get_embedding_dimension()
    identity = {**identity, "rows": rows, "dim": dim}
    progress_path = folder / PROGRESS
    done = 0
    if progress_path.is_file():
        recorded = json.loads(progress_path.read_text(encoding="utf-8"))
        differs = [key for key in identity if recorded.get(key) != identity[key]]
        if differs:
            raise UsageError(f"{progress_path}: the encode there was of another corpus or setup ({', '.join(differs)} "
                             "differ); resume it with its own options, or start afresh with --overwrite")
        # The same chunks as before: sentence-transformers batches within a chunk, and other batches would pad
        # differently, changing the last bits of the embeddings.
        done, chunk_size = recorded["done"], recorded.get("chunk_size", chunk_size)
    identity["chunk_size"] = chunk_size
    embeddings = np.memmap(folder / EMBEDDINGS, dtype=np.float32, mode="r+" if done else "w+", shape=(rows, dim))
    if done == 0:
        write_json_atomic(progress_path, {**identity, "done": 0})
    bar = tqdm(total=rows, initial=done, unit="sent", desc="encode", smoothing=0.1)
    for start in range(done, rows, chunk_size):
        stop = min(start + chunk_size, rows)
        texts = [document["text"] for document in read_documents(folder, range(start, stop))]
        embeddings[start:stop] = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                              convert_to_numpy=True, show_progress_bar=False, pool=pool)
        embeddings.flush()  # the rows reach the disk before the progress file says they are there
        write_json_atomic(progress_path, {**identity, "done": stop})
        progress.stage(f"encoding the corpus ({stop} of {rows} rows done)")
        kill_point("encoded-chunk")
        bar.update(stop - start)
        if on_chunk is not None:
            on_chunk(stop)
    bar.close()
    return embeddings


# ----------------------------------------------------------------------------- the commands

def check_index_dir(path: Path, resume: bool, overwrite: bool) -> None:
    """An --output-dir `index` may use: not being written by another process; new or empty; an index folder with
    --resume or --overwrite."""
    check_not_busy(path, "--output-dir")
    _check_index_dir_contents(path, resume, overwrite)


def _check_index_dir_contents(path: Path, resume: bool, overwrite: bool) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        is_index_dir = path.is_dir() and ((path / PROGRESS).is_file() or (path / INDEX_META).is_file())
        if (resume or overwrite) and is_index_dir:
            return
        if resume or overwrite:
            raise UsageError(f"--output-dir {path}: not an index folder (no {PROGRESS} or {INDEX_META}); "
                             f"{'nothing to resume' if resume else 'not deleting it'}; choose another folder")
        raise UsageError(f"--output-dir {path}: already exists and is not empty; choose a new folder, continue "
                         "it with --resume or replace it with --overwrite")
    if resume:
        raise UsageError(f"--resume: {path} holds no index to continue; give the --output-dir of an interrupted run")


def index_corpus(config: RunConfig) -> dict[str, Any]:
    """`sbert-repro index`: corpus -> documents.jsonl -> embeddings on disk (resumable) -> index -> check.

    The command holds the folder's lock throughout (one writer per folder). With --overwrite everything is built
    in a staging folder beside it and swapped in at the end, so the old index answers searches until the new one
    is complete; a failed or interrupted replacement is deleted."""
    if config.corpus is None:
        raise UsageError("--corpus is required: a JSON lines corpus or a BEIR folder")
    if not config.corpus.exists():
        raise UsageError(f"--corpus {config.corpus}: no such file or folder")
    folder = config.output_dir
    check_index_dir(folder, config.resume, config.overwrite)
    device = resolve_device(config.device)
    config = replace(config, precision=resolve_precision(config.precision, device))
    run_environment = environment(device)
    with locked(folder, "--output-dir"):
        _check_index_dir_contents(folder, config.resume, config.overwrite)  # again: another writer may have finished
        staging = fresh_staging(folder, "--output-dir")
        with removed_on_failure(staging):  # bad input leaves the target as it was, and nothing beside it
            model, rows, fingerprint, read_s = _read_corpus(config, device, folder, staging)
        # A new or resumed index is encoded in place, where a killed encode can be resumed.
        work = staging if config.overwrite else _move_documents(staging, folder)
        with removed_on_failure(staging) if config.overwrite else nullcontext():
            meta = _encode_and_index(config, device, work, model, rows, fingerprint)
            meta.update({"timings": {"read_corpus_s": read_s, **meta["timings"]}, "environment": run_environment})
            write_json_atomic(work / INDEX_META, meta)
            if config.overwrite:
                swap_in(staging, folder)
    check = meta["self_check"]
    recall = check[f"recall@{RECALL_DEPTH}_vs_exact"]
    knobs = "".join(f" {name}={value}" for name, value in check["search_parameters"].items())
    print(f"{folder}: {rows} documents, index {config.index}{knobs}, "
          f"{check['bytes_per_vector']:.0f} bytes/vector; recall@{RECALL_DEPTH} against exact search "
          f"{recall:.3f} at {check['queries_per_s']:.0f} queries/s (exact: {check['exact_queries_per_s']:.0f}/s)")
    return meta


def _read_corpus(config: RunConfig, device: str, folder: Path, staging: Path
                 ) -> tuple[SentenceTransformer, int, str, float]:
    """1. The corpus, checked row by row and copied in row order into `staging` (search answers with its text),
    and the model; every check that can fail before encoding. Returns (model, rows, corpus sha256, seconds)."""
    progress.stage("reading the corpus")
    start = time.perf_counter()
    rows, fingerprint = write_documents(iter_corpus(config.corpus), staging)
    if config.resume and (folder / PROGRESS).is_file():
        encoded = json.loads((folder / PROGRESS).read_text(encoding="utf-8")).get("corpus_sha256")
        if encoded != fingerprint:
            raise UsageError(f"--resume: {folder} was encoded from another corpus than {config.corpus}; "
                             "give the same corpus, or start afresh with --overwrite")
    model = for_inference(build_model(config.model, config.pooling, device, config.trust_remote_code),
                          config.precision)
    model.max_seq_length = eval_max_seq_length(model, config.eval_max_seq_length)
    check_trainable(config.index, model.get_embedding_dimension(), rows, config.index_train_size)
    return model, rows, fingerprint, time.perf_counter() - start


def _move_documents(staging: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in (DOCUMENTS, OFFSETS):
        os.replace(staging / name, folder / name)
    staging.rmdir()
    return folder


def _encode_and_index(config: RunConfig, device: str, folder: Path, model: SentenceTransformer, rows: int,
                      fingerprint: str) -> dict[str, Any]:
    """2-3. Embeddings into `folder` chunk by chunk (a killed encode continues where it stopped), the index, and
    its recall against exact search on a sample of corpus vectors used as queries; returns index.json's content."""
    timings: dict[str, float] = {}
    progress.stage("encoding the corpus")
    start = time.perf_counter()
    identity = {"corpus_sha256": fingerprint, "model": config.model, "pooling": config.pooling,
                "max_seq_length": model.max_seq_length, "precision": config.precision}
    with encoding_pool(model, config.encode_processes, device) as pool:
        embeddings = encode_to_disk(model, folder, rows, identity, config.eval_batch_size,
                                    config.encode_chunk_size, pool)
    timings["encode_s"] = time.perf_counter() - start

    progress.stage("building the index")
    index, timings["build_index_s"] = build_timed(config.index, embeddings, config.index_train_size, config.seed)
    set_search_parameters(index, config.nprobe, config.ef_search)
    faiss.write_index(index, str(folder / f".{INDEX}.tmp"))
    os.replace(folder / f".{INDEX}.tmp", folder / INDEX)
    sample = np.sort(np.random.default_rng(config.seed).choice(rows, size=min(SELF_CHECK_QUERIES, rows),
                                                              replace=False))
    queries = np.ascontiguousarray(embeddings[sample])
    exact_rows, exact_per_s = exact_search_in_slices(embeddings, queries, RECALL_DEPTH)
    check, _, _ = compare_with_exact(index, queries, exact_rows, exact_per_s)
    check["bytes_per_vector"] = bytes_per_vector(index)
    return {"kind": "index", "config": config.to_dict(), "rows": rows, "dim": int(embeddings.shape[1]),
            "max_seq_length": model.max_seq_length, "corpus_sha256": fingerprint,
            "self_check": {"queries": f"{len(sample)} corpus vectors", **check}, "timings": timings}


def read_queries(config: SearchConfig) -> list[str]:
    """The queries: from the command line, else --queries-file (- is stdin), else stdin when piped."""
    if config.queries:
        return list(config.queries)
    if config.queries_file is not None and str(config.queries_file) != "-":
        try:
            text = config.queries_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"--queries-file {config.queries_file}: cannot read it as UTF-8 text "
                             f"({getattr(error, 'strerror', None) or type(error).__name__})") from None
    elif config.queries_file is not None or not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        raise UsageError("no queries: give them as arguments, with --queries-file FILE, or on standard input")
    queries = [line.strip() for line in text.splitlines() if line.strip()]
    if not queries:
        raise UsageError("no queries: the input holds only blank lines")
    return queries


def search_index(config: SearchConfig) -> list[dict[str, Any]]:
    """`sbert-repro search`: encode the queries with the index's own model, search, print the hits."""
    folder = config.index_dir
    if not (folder / INDEX_META).is_file() or not (folder / INDEX).is_file():
        raise UsageError(f"--index-dir {folder}: no finished index there ({INDEX_META}, {INDEX}); "
                         "build one with `sbert-repro index`")
    meta = json.loads((folder / INDEX_META).read_text(encoding="utf-8"))
    check_index_options(meta["config"]["index"], config.nprobe, config.ef_search)
    queries = read_queries(config)
    index = faiss.read_index(str(folder / INDEX))
    set_search_parameters(index, config.nprobe, config.ef_search)
    built = meta["config"]
    device = resolve_device(config.device)
    # The queries in the number format the documents were encoded in (indexes from before --precision: fp32).
    model = for_inference(build_model(built["model"], built["pooling"], device, config.trust_remote_code),
                          resolve_precision(built.get("precision", "fp32"), device))
    model.max_seq_length = meta["max_seq_length"]
    query_embeddings = model.encode(queries, normalize_embeddings=True, convert_to_numpy=True)
    scores, rows = search(index, query_embeddings, config.top_k)
    results = []
    for query, query_scores, query_rows in zip(queries, scores, rows, strict=True):
        found = [(score, row) for score, row in zip(query_scores.tolist(), query_rows.tolist(), strict=True)
                 if row >= 0]
        documents = read_documents(folder, [row for _, row in found])
        results.append({"query": query, "hits": [{"id": document["_id"], "score": score, "text": document["text"]}
                                                 for (score, _), document in zip(found, documents, strict=True)]})
    for result in results:
        if config.json:
            print(json.dumps(result, ensure_ascii=False))
            continue
        print(f"query: {result['query']}")
        for rank, hit in enumerate(result["hits"], start=1):
            text = hit["text"] if len(hit["text"]) <= 100 else hit["text"][:99] + "…"
            print(f"  {rank:>3}  {hit['score']:.4f}  {hit['id']}  {text}")
    return results
