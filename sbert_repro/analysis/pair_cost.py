"""The paper's cost argument, measured (Reimers & Gurevych 2019, section 1): the most similar pair among n sentences,
found by a cross-encoder (every one of the n(n-1)/2 pairs is a forward pass) and by a bi-encoder (n encodes, then an
exact FAISS search of every vector against all). benchmarks/cost.py times both on one machine and writes a record;
report/cost_table.py draws the table and plot. The routes take their model as a function, so tests can hand them a
stand-in whose score is the bi-encoder's cosine: then both must find the same pair.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from sbert_repro.model.cross_encoder import PairScorer

# Encodes sentences to L2-normalised float32 vectors (a bi-encoder), in their order.
Encoder = Callable[[list[str]], np.ndarray]
PAIR_CHUNK = 8192  # pairs scored per call: memory stays flat whatever n is


def all_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows i < j of every unordered pair of n items: a symmetric score is asked for in one order only."""
    first, second = np.triu_indices(n, k=1)
    return first, second


def by_cross_encoder(sentences: list[str], score_pairs: PairScorer) -> dict[str, Any]:
    """The most similar pair by scoring all n(n-1)/2 pairs: (i, j) with i < j, its score, seconds, pairs/s. The first
    best pair in (i, j) order wins a tie."""
    first, second = all_pairs(len(sentences))
    best_score, best_pair = -np.inf, (0, 0)
    start = time.perf_counter()
    for at in range(0, len(first), PAIR_CHUNK):
        rows, columns = first[at:at + PAIR_CHUNK], second[at:at + PAIR_CHUNK]
        scores = score_pairs([(sentences[i], sentences[j]) for i, j in zip(rows, columns, strict=True)])
        top = int(np.argmax(scores))
        if scores[top] > best_score:
            best_score, best_pair = float(scores[top]), (int(rows[top]), int(columns[top]))
    seconds = time.perf_counter() - start
    return {"pair": list(best_pair), "score": best_score, "pairs": len(first), "seconds": seconds,
            "pairs_per_s": len(first) / max(seconds, 1e-9)}


def by_bi_encoder(sentences: list[str], encode: Encoder) -> dict[str, Any]:
    """The most similar pair by n encodes and an exact inner-product search (IndexFlatIP) of every vector against all,
    two deep to skip itself: (i, j) with i < j, its cosine, and the seconds of each part."""
    start = time.perf_counter()
    vectors = np.ascontiguousarray(encode(sentences), dtype=np.float32)
    encoded = time.perf_counter()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    scores, rows = index.search(vectors, 2)
    searched = time.perf_counter()
    # Each vector's nearest other one: itself is usually first, but a duplicate may come first instead.
    own = rows[:, 0] == np.arange(len(vectors))
    neighbour = np.where(own, rows[:, 1], rows[:, 0])
    similarity = np.where(own, scores[:, 1], scores[:, 0])
    best = int(np.argmax(similarity))
    pair = sorted((best, int(neighbour[best])))
    encode_s, search_s = encoded - start, searched - encoded
    return {"pair": pair, "score": float(similarity[best]), "encode_seconds": encode_s, "search_seconds": search_s,
            "seconds": encode_s + search_s, "sentences_per_s": len(sentences) / max(encode_s, 1e-9)}


def measure(sentences: list[str], score_pairs: PairScorer, encode: Encoder) -> dict[str, Any]:
    """Both routes on the same sentences, and whether they found the same pair."""
    cross, bi = by_cross_encoder(sentences, score_pairs), by_bi_encoder(sentences, encode)
    return {"n": len(sentences), "cross_encoder": cross, "bi_encoder": bi, "agree": cross["pair"] == bi["pair"],
            "ratio": cross["seconds"] / max(bi["seconds"], 1e-9)}


def extrapolate(point: dict[str, Any], n: int) -> dict[str, Any]:
    """The measured point scaled to n sentences at its measured rates: the cross-encoder's time by its pairs,
    n(n-1)/2; the bi-encoder's encoding by n and its all-against-all search by n^2 (every vector against all)."""
    measured = point["n"]
    cross = point["cross_encoder"]["seconds"] * (n * (n - 1)) / (measured * (measured - 1))
    encode = point["bi_encoder"]["encode_seconds"] * n / measured
    search = point["bi_encoder"]["search_seconds"] * (n / measured) ** 2
    return {"n": n, "extrapolated": True, "from_n": measured, "cross_encoder_seconds": cross, "pairs": n * (n - 1) // 2,
            "bi_encoder_seconds": encode + search, "bi_encode_seconds": encode, "bi_search_seconds": search,
            "ratio": cross / max(encode + search, 1e-9)}


def sample(sentences: list[str], n: int, seed: int) -> list[str]:
    """n distinct sentences drawn with `seed`, in the data's order (distinct: a repeated sentence would tie)."""
    distinct = list(dict.fromkeys(sentences))
    if n > len(distinct):
        raise ValueError(f"{n} sentences asked for, and the data has {len(distinct)} distinct ones")
    chosen = np.random.default_rng(seed).choice(len(distinct), n, replace=False)
    return [distinct[i] for i in sorted(chosen)]
