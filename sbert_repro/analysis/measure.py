"""Every geometry measure of one model's vectors, into one entry of a `geometry` record: anisotropy,
alignment/uniformity, the spectrum, rogue dimensions, cosine by gold bin and their histograms (analysis/geometry.py
holds the measures themselves)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from sbert_repro.analysis import geometry
from sbert_repro.evaluation.metrics import cosine_similarities

HISTOGRAM_EDGES = np.linspace(-1.0, 1.0, 41)  # cosine in steps of 0.05
ALIGNED_GOLD = 4.0  # Wang & Isola's positive pairs: STSb test pairs whose gold score is at least this
ROGUE_TOP = 3


def measure_vectors(vectors: np.ndarray, gold_vectors: tuple[np.ndarray, np.ndarray], gold: np.ndarray,
                    pairs: int, seed: int) -> dict[str, Any]:
    """Every measure of one model's vectors: `vectors` of the sample, `gold_vectors` of STSb test's pairs."""
    first, second = geometry.sample_pairs(len(vectors), pairs, seed)
    gold_cosines = cosine_similarities(*gold_vectors)
    aligned = gold >= ALIGNED_GOLD
    bins = geometry.cosine_by_gold_bin(gold_cosines, gold)
    index = np.minimum(np.digitize(gold, geometry.GOLD_BIN_EDGES) - 1, len(geometry.GOLD_BIN_EDGES) - 2)
    return {
        "dimension": int(vectors.shape[1]),
        "anisotropy": asdict(geometry.anisotropy(vectors, pairs, seed)),
        "alignment": geometry.alignment(gold_vectors[0][aligned], gold_vectors[1][aligned]),
        "uniformity": geometry.uniformity(vectors, seed=seed),
        "spectrum": asdict(geometry.spectrum(vectors)),
        "eigenvalues": [float(value) for value in geometry.covariance_eigenvalues(vectors)],
        "rogue_dimensions": asdict(geometry.rogue_dimensions(vectors, ROGUE_TOP, pairs, seed)),
        "gold_bins": asdict(bins),
        "histograms": {
            "edges": [float(edge) for edge in HISTOGRAM_EDGES],
            "random_pairs": _histogram(geometry.pair_cosines(vectors, first, second)),
            "gold_bins": [_histogram(gold_cosines[index == k]) for k in range(len(geometry.GOLD_BIN_EDGES) - 1)]},
    }


def _histogram(cosines: np.ndarray) -> list[int]:
    return [int(count) for count in np.histogram(np.clip(cosines, -1.0, 1.0), HISTOGRAM_EDGES)[0]]
