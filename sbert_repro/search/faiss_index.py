"""FAISS indexes beyond exact search, and their recall against it.

An index is named by a faiss index_factory string: "Flat" (exact), "IVF4096,Flat", "HNSW32",
"IVF4096,PQ64", "OPQ64,IVF4096,PQ64", ... Vectors are L2-normalised and scored by inner product, which
on them is cosine. IVF and PQ indexes are trained on a random sample of the vectors.

An approximate index is judged against exact search on the same queries: exact_search (or, for vectors on
disk, exact_search_in_slices) gives exact search's answer, and build_and_compare builds the index and measures
it against that answer at each knob setting. Retrieval scoring, `sbert-repro index`'s self-check and
benchmarks/ann.py all go through these two.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from sbert_repro.config.checks import EXACT_INDEX
from sbert_repro.errors import UsageError

EXACT = EXACT_INDEX  # "Flat"
RECALL_DEPTH = 10  # approximate search is judged by recall@10 against exact search
# Training sample: faiss's k-means warns below 39 points a centroid and subsamples above 256; 64 a centroid trains
# each list well at a quarter of the cost of 256, and the sample is capped so that training stays minutes.
TRAIN_PER_CENTROID, MIN_PER_CENTROID, MAX_TRAIN_SIZE, OTHER_TRAIN_SIZE = 64, 39, 1 << 20, 100_000


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


def centroids(index: faiss.Index) -> tuple[int, int]:
    """(IVF lists, PQ centroids per sub-quantizer) of an index, 0 where it has none: what its training fits."""
    ivf = faiss.try_extract_index_ivf(index)
    found = faiss.downcast_index(index.index if isinstance(index, faiss.IndexPreTransform) else index)
    if hasattr(found, "hnsw"):  # HNSW over PQ codes keeps its quantizer in its storage
        found = faiss.downcast_index(found.storage)
    pq = getattr(found, "pq", None)
    return (int(ivf.nlist) if ivf is not None else 0), (int(pq.ksub) if pq is not None else 0)


def training_size(index: faiss.Index, rows: int, train_size: int | None) -> int:
    """How many vectors train the (empty) `index` over `rows`: --train-size where given, else 64 for each IVF list (or
    PQ centroid), capped at 2^20 (or faiss's minimum of 39 a list, where that is more) and at the corpus; 100,000 for
    an index trained otherwise (a scalar quantizer, a PCA); 0 for one that needs no training."""
    if index.is_trained:
        return 0
    if train_size is not None:
        return min(train_size, rows)
    lists, codebook = centroids(index)
    if not lists and not codebook:
        return min(rows, OTHER_TRAIN_SIZE)
    return min(rows, max(MAX_TRAIN_SIZE, MIN_PER_CENTROID * lists), TRAIN_PER_CENTROID * max(lists, codebook))


def check_trainable(factory: str, dim: int, rows: int, train_size: int | None) -> None:
    """Refuse before any encoding what build_index would refuse, or train badly, after it: a string faiss cannot
    parse, or IVF lists with fewer than faiss's minimum of 39 training vectors each."""
    if "IDMap" in factory:  # it takes ids with each vector; ours are the row numbers, which faiss gives itself
        raise UsageError(f"--index {factory!r}: IDMap indexes need ids with every vector, and rows are their own "
                         "ids here; leave IDMap out of the string")
    index = empty_index(factory, dim)
    lists, _ = centroids(index)
    sample = training_size(index, rows, train_size)
    if lists and sample < MIN_PER_CENTROID * lists:
        most = max(sample // MIN_PER_CENTROID, 1)
        given = f"--train-size gives {sample}" if train_size is not None and train_size < rows else \
            f"this corpus gives {sample}"
        raise UsageError(f"--index {factory!r}: {lists} IVF lists need at least {MIN_PER_CENTROID * lists} training "
                         f"vectors (faiss's minimum, {MIN_PER_CENTROID} a list), and {given}; use at most "
                         f"{most} list{'s' if most > 1 else ''} (about rows / {TRAIN_PER_CENTROID} trains each list "
                         "well), or Flat")


def index_bytes(factory: str, dim: int, rows: int) -> int:
    """About how many bytes `factory` holding `rows` vectors takes on disk: each vector's code (an IVF list also
    stores its 8-byte id; an HNSW graph its level-0 links), and each IVF list's centroid."""
    index = empty_index(factory, dim)
    base = faiss.downcast_index(index.index if isinstance(index, faiss.IndexPreTransform) else index)
    try:
        if hasattr(base, "hnsw"):
            per_vector = faiss.downcast_index(base.storage).sa_code_size() + 4 * base.hnsw.nb_neighbors(0) + 16
        else:
            per_vector = index.sa_code_size() + (8 if faiss.try_extract_index_ivf(index) is not None else 0)
    except RuntimeError:  # an index type without a code size of its own (NSG, some fast-scan ones): as the vectors
        per_vector = 4 * dim
    lists, _ = centroids(index)
    return rows * per_vector + lists * dim * 4


def check_index_before_encoding(factory: str, dim: int, rows: int, train_size: int | None, nprobe: int | None,
                                ef_search: int | None) -> None:
    """Refuse, before anything is encoded, what building and searching the index of `rows` `dim`-dimensional vectors
    would refuse after it: check_trainable's checks, and the search-time knobs as faiss judges them on the index
    itself (an IVF index with an HNSW quantizer, say, has no efSearch of its own). An index that needs no training is
    also built on a few random unit vectors and searched (one that does would need as many as it has lists)."""
    check_trainable(factory, dim, rows, train_size)
    index = empty_index(factory, dim)
    set_search_parameters(index, nprobe, ef_search)
    if index.is_trained:
        vectors = np.random.default_rng(0).standard_normal((8, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        try:
            index.add(vectors)
            index.search(vectors, 2)
        except RuntimeError as error:
            raise UsageError(f"--index {factory!r}: faiss cannot add or search vectors with it "
                             f"({_faiss_reason(error)}); give an index_factory string such as Flat, IVF4096,Flat, "
                             "HNSW32 or IVF4096,PQ64") from None


def build_index(factory: str, embeddings: np.ndarray, train_size: int | None, seed: int,
                add_chunk: int = 65536) -> faiss.Index:
    """An inner-product index of `embeddings` (an array or a memmap), trained first if it needs training, on a
    seeded sample of training_size vectors."""
    rows, dim = embeddings.shape
    index = empty_index(factory, dim)
    if not index.is_trained:
        size = training_size(index, rows, train_size)
        sample = np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))
        try:
            index.train(np.ascontiguousarray(embeddings[sample], dtype=np.float32))
        except RuntimeError as error:
            raise UsageError(f"--index {factory!r}: training on {len(sample)} vectors failed ({_faiss_reason(error)}); "
                             "use fewer IVF lists or PQ bits, or more vectors (--train-size, a larger corpus)"
                             ) from None
    # In slices: a memmap is read from disk a part at a time.
    for start in range(0, rows, add_chunk):
        try:
            index.add(np.ascontiguousarray(embeddings[start:start + add_chunk], dtype=np.float32))
        except RuntimeError as error:
            raise UsageError(f"--index {factory!r}: adding the vectors failed ({_faiss_reason(error)}); give an "
                             "index_factory string such as Flat, IVF4096,Flat, HNSW32 or IVF4096,PQ64") from None
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
    found: dict[str, int] = {}
    if not isinstance(index, faiss.Index):  # exact search over vectors on disk: no knobs
        return found
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
                           ) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact top-k over (memory-mapped) vectors, a slice at a time so they never all sit in memory at once:
    scores and row ids (min(k, rows) of each) and queries answered per second. The same answer as exact_search."""
    start = time.perf_counter()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_scores = np.empty((len(queries), 0), dtype=np.float32)
    best_rows = np.empty((len(queries), 0), dtype=np.int64)
    for offset in range(0, len(embeddings), rows_per_slice):
        part = np.ascontiguousarray(embeddings[offset:offset + rows_per_slice], dtype=np.float32)
        scores, rows = faiss.knn(queries, part, min(k, len(part)), metric=faiss.METRIC_INNER_PRODUCT)
        scores, rows = np.hstack([best_scores, scores]), np.hstack([best_rows, rows + offset])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best_rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    return best_scores, best_rows, len(queries) / max(time.perf_counter() - start, 1e-9)


class VectorsOnDisk:
    """Exact search over a memory-mapped (rows, dim) float32 file, with faiss's search() of a Flat index: the same
    answer as a Flat index built from the file, without holding its copy of the vectors."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors, (self.ntotal, self.d) = vectors, vectors.shape

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows, _ = exact_search_in_slices(self.vectors, queries, k)
        return scores, rows


def bytes_per_vector(index: faiss.Index) -> float:
    """The serialised index's size over the vectors it holds (codes, ids, lists and quantizers included). It
    serialises the index in memory: an index written to disk is measured by its file instead."""
    return faiss.serialize_index(index).size / max(index.ntotal, 1)


def recall_against_exact(approximate: np.ndarray, exact: np.ndarray, k: int = RECALL_DEPTH) -> float:
    """Mean share of exact search's top k that approximate search also returned in its top k."""
    shares = []
    for found, truth in zip(approximate[:, :k], exact[:, :k], strict=True):
        truth_set = {row for row in truth.tolist() if row >= 0}
        shares.append(len(truth_set & set(found.tolist())) / len(truth_set) if truth_set else 1.0)
    return float(np.mean(shares))


def build_timed(factory: str, embeddings: np.ndarray, train_size: int | None, seed: int) -> tuple[faiss.Index, float]:
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


def exact_search(embeddings: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact (Flat) top k over vectors in memory: scores, row ids, and queries per second of the search alone."""
    return timed_search(build_index(EXACT, embeddings, train_size=0, seed=0), queries, k)


@dataclass(frozen=True)
class Knobs:
    """An approximate index's search-time setting; a knob left None stays as the index has it."""

    nprobe: int | None = None  # IVF lists visited
    ef_search: int | None = None  # HNSW candidate list


@dataclass(frozen=True)
class Comparison:
    """An approximate index at one knob setting, against exact search on the same queries."""

    measured: dict[str, Any]  # compare_with_exact's: knobs, queries/s (and exact search's), recall@10 vs exact
    scores: np.ndarray
    rows: np.ndarray


@dataclass(frozen=True)
class ComparedIndex:
    """An approximate index as build_and_compare built it, and how it fared at each knob setting, in order."""

    index: faiss.Index  # left at the last setting compared
    build_s: float  # training included
    bytes_per_vector: float | None  # None: not measured (an index written to disk is measured by its file)
    comparisons: list[Comparison]


def build_and_compare(factory: str, embeddings: np.ndarray, queries: np.ndarray, exact_rows: np.ndarray,
                      exact_per_s: float, train_size: int | None, seed: int, settings: Iterable[Knobs] = (Knobs(),),
                      measure_size: bool = True) -> ComparedIndex:
    """Build `factory` over `embeddings` once, then at each knob setting search `queries` as deep as exact search
    answered them (`exact_rows`, at `exact_per_s`) and measure how close and how fast it came. The index is built
    once for all settings, and its size measured once: both cost more than a search."""
    index, build_s = build_timed(factory, embeddings, train_size, seed)
    comparisons = []
    for knobs in settings:
        set_search_parameters(index, knobs.nprobe, knobs.ef_search)
        comparisons.append(Comparison(*compare_with_exact(index, queries, exact_rows, exact_per_s)))
    return ComparedIndex(index, build_s, bytes_per_vector(index) if measure_size else None, comparisons)
