"""The geometry of an embedding space, as pure functions on (n, d) matrices: no models, no rounding, no I/O.

Why cosine between raw contextual embeddings means little, and what a siamese fine-tune changes, in numbers:
- anisotropy: the mean cosine of random pairs (near 0 for an isotropic space, high when vectors share a cone);
- alignment and uniformity (Wang & Isola, 2020) on L2-normalised vectors;
- the covariance spectrum: variance share of the top principal components, effective rank, and the "rogue
  dimensions" that carry most of the expected cosine (Timkey & van Schijndel, 2021);
- the cosine of gold-scored pairs by gold-score bin, and how well the bins separate.

Computation is in float64. A matrix with fewer than 2 rows has no pairs and no covariance: a UsageError, since it
comes from the user's sentences (one sentence in --sentences).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import pdist
from scipy.special import logsumexp

from sbert_repro.errors import UsageError
from sbert_repro.model.transforms import as_matrix, normalised, principal_axes

logger = logging.getLogger(__name__)

# 10,000 random pairs put the standard error of a mean cosine near 0.002 even for a spread-out space.
DEFAULT_PAIRS = 10_000
# Uniformity over every pair up to this many pairs (a 3,000-sentence set has 4.5M), a seeded sample beyond.
MAX_UNIFORMITY_PAIRS = 5_000_000
PAIR_SLICE = 65_536  # sampled pairs compared at once (a slice of 768-d float64 pairs is ~0.4 GB)
GOLD_BIN_EDGES = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


def sample_pairs(n: int, count: int = DEFAULT_PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` seeded random pairs (first, second) of distinct row indices in [0, n), drawn with replacement."""
    if n < 2:
        raise UsageError(f"need at least 2 vectors to draw pairs, got {n}")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, size=count)
    # A second index drawn from the n - 1 others, uniformly: skip over `first`.
    second = rng.integers(0, n - 1, size=count)
    second += second >= first
    return first, second


def pair_cosines(embeddings: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine of rows first[i] and second[i] for each i (e.g. for a histogram of random-pair cosines)."""
    unit = normalised(as_matrix(embeddings))
    return np.einsum("ij,ij->i", unit[first], unit[second])


@dataclass(frozen=True)
class Anisotropy:
    mean_cosine: float  # of random pairs of distinct rows
    centered_mean_cosine: float  # of the same pairs once the matrix's mean vector is subtracted
    pairs: int


def anisotropy(embeddings: np.ndarray, pairs: int = DEFAULT_PAIRS, seed: int = 0) -> Anisotropy:
    """Mean cosine of seeded random pairs, before and after mean-centering (the same pairs both times).

    A shared offset (the narrow cone of raw BERT vectors) makes the first high; centering removes the offset,
    so the gap between the two says how much of the cosine is the offset rather than the sentences.
    """
    x = as_matrix(embeddings)
    first, second = sample_pairs(len(x), pairs, seed)
    return Anisotropy(mean_cosine=float(pair_cosines(x, first, second).mean()),
                      centered_mean_cosine=float(pair_cosines(x - x.mean(axis=0), first, second).mean()),
                      pairs=pairs)


def alignment(first: np.ndarray, second: np.ndarray, alpha: float = 2.0) -> float:
    """Wang & Isola's alignment: mean ||f(x) - f(y)||^alpha over positive pairs (row i of `first` with row i of
    `second`), on L2-normalised vectors. 0 when every pair is identical; at most 2^alpha. Lower is better."""
    u, v = normalised(as_matrix(first)), normalised(as_matrix(second))
    if u.shape != v.shape:
        raise ValueError(f"positive pairs need matrices of one shape, got {u.shape} and {v.shape}")
    return float(np.mean(np.linalg.norm(u - v, axis=1) ** alpha))


def uniformity(embeddings: np.ndarray, t: float = 2.0, max_pairs: int = MAX_UNIFORMITY_PAIRS,
               seed: int = 0) -> float:
    """Wang & Isola's uniformity: log mean exp(-t ||f(x) - f(y)||^2) over pairs of distinct rows, L2-normalised.

    Every unordered pair (as their torch.pdist code) while there are at most `max_pairs`, else `max_pairs` seeded
    random pairs. Lower is more uniform: -4 (= -2t) at best, 0 when all vectors coincide.
    """
    unit = normalised(as_matrix(embeddings))
    n = len(unit)
    if n * (n - 1) // 2 <= max_pairs:
        squared = pdist(unit, "sqeuclidean")
    else:
        first, second = sample_pairs(n, max_pairs, seed)
        # ||u - v||^2 = 2 - 2 u.v for unit vectors, a slice of pairs at a time: all 5M pairs' differences at once
        # would take tens of GB
        squared = np.concatenate([2.0 - 2.0 * np.einsum("ij,ij->i", unit[first[i:i + PAIR_SLICE]],
                                                         unit[second[i:i + PAIR_SLICE]])
                                  for i in range(0, len(first), PAIR_SLICE)])
    return float(logsumexp(-t * squared) - np.log(len(squared)))


def covariance_eigenvalues(embeddings: np.ndarray) -> np.ndarray:
    """The d eigenvalues of the covariance (ddof 1), descending: the spectrum to plot."""
    return principal_axes(as_matrix(embeddings))[2]


@dataclass(frozen=True)
class Spectrum:
    top1_share: float  # of the total variance, in the first principal component
    top10_share: float  # in the first ten (all of it when d <= 10)
    effective_rank: float  # between 1 (one direction) and d (every direction equal)


def spectrum(embeddings: np.ndarray) -> Spectrum:
    """Variance shares of the top 1 and 10 principal components, and the effective rank: exp of the Shannon
    entropy of the covariance eigenvalues normalised to sum to 1 (Roy & Vetterli's definition, on eigenvalues)."""
    eigenvalues = np.clip(covariance_eigenvalues(embeddings), 0.0, None)  # rounding can leave tiny negatives
    total = eigenvalues.sum()
    if total <= 0:
        raise UsageError("all vectors are identical: their covariance has no spectrum")
    shares = eigenvalues / total
    nonzero = shares[shares > 0]
    return Spectrum(top1_share=float(shares[0]), top10_share=float(shares[:10].sum()),
                    effective_rank=float(np.exp(-np.sum(nonzero * np.log(nonzero)))))


@dataclass(frozen=True)
class RogueDimensions:
    dimensions: tuple[int, ...]  # the `top` dimensions contributing most to the mean cosine, largest first
    contributions: tuple[float, ...]  # each one's contribution; all d contributions sum to the mean cosine
    share: float  # their summed contribution over the mean cosine
    mean_cosine: float  # of the same random pairs, as in anisotropy()


def rogue_dimensions(embeddings: np.ndarray, top: int = 3, pairs: int = DEFAULT_PAIRS, seed: int = 0
                     ) -> RogueDimensions:
    """Timkey & van Schijndel's contribution of each dimension i to the expected cosine of random pairs:
    CC_i = mean over pairs of x_i y_i / (||x|| ||y||), so that the d contributions sum to the mean cosine.

    A rogue dimension has large values of one sign in every vector; it can carry most of the cosine alone.
    `share` is the top dimensions' part of the mean cosine (Timkey's relative contribution); it is only meaningful
    when the mean cosine is well away from 0, as in an anisotropic space, and can exceed 1 when other dimensions
    contribute negatively. A zero-mean dimension adds little here however large its variance: see spectrum().
    """
    unit = normalised(as_matrix(embeddings))
    if not 1 <= top <= unit.shape[1]:
        raise ValueError(f"top must be between 1 and the dimension {unit.shape[1]}, got {top}")
    first, second = sample_pairs(len(unit), pairs, seed)
    contributions = np.mean(unit[first] * unit[second], axis=0)
    order = np.argsort(-contributions, kind="stable")[:top]
    mean_cosine = float(contributions.sum())
    return RogueDimensions(dimensions=tuple(int(i) for i in order),
                           contributions=tuple(float(c) for c in contributions[order]),
                           share=float(contributions[order].sum() / mean_cosine), mean_cosine=mean_cosine)


@dataclass(frozen=True)
class GoldBin:
    low: float
    high: float
    count: int
    # None when the bin is empty: a missing bin is never a 0.
    mean: float | None
    std: float | None  # population (ddof 0): it describes the bin's cosines, it estimates nothing
    quartiles: tuple[float, float, float] | None  # 25th, 50th, 75th percentiles, numpy's linear interpolation


@dataclass(frozen=True)
class GoldBins:
    bins: tuple[GoldBin, ...]
    separation: float


def cosine_by_gold_bin(cosines: np.ndarray, gold: np.ndarray, edges: tuple[float, ...] = GOLD_BIN_EDGES
                       ) -> GoldBins:
    """The cosines of gold-scored pairs, by gold-score bin ([0, 1), [1, 2), ..., [4, 5]: the last bin holds 5),
    and one number for how well the bins separate.

    separation: the mean, over adjacent non-empty bins, of the gap between their mean cosines divided by the
    root mean square of their two standard deviations (Cohen's d with an unweighted pooled std). Why this
    rather than Spearman: Spearman of cosine against gold is already the STS score; this says how far apart the
    bins' cosines lie relative to their spread inside a bin. It is unchanged by any increasing affine map of the
    cosines, so a raw model whose cosines all crowd near 0.9 and a fine-tuned one using the whole range compare
    fairly, which a gap in raw cosine would not allow. It is infinite when two adjacent bins have zero spread.
    """
    cosines, gold = np.asarray(cosines, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if cosines.shape != gold.shape or cosines.ndim != 1:
        raise ValueError(f"cosines and gold must be 1-d of one length, got {cosines.shape} and {gold.shape}")
    if gold.size and (gold.min() < edges[0] or gold.max() > edges[-1]):
        raise ValueError(f"gold scores must lie in [{edges[0]}, {edges[-1]}], got {gold.min()}..{gold.max()}")
    # np.digitize's bins are [low, high); the last edge goes into the last bin.
    index = np.minimum(np.digitize(gold, edges) - 1, len(edges) - 2)
    bins = tuple(_gold_bin(cosines[index == k], edges[k], edges[k + 1]) for k in range(len(edges) - 1))
    filled = [b for b in bins if b.count]
    if len(filled) < 2:
        raise ValueError("the gold scores fill fewer than two bins: nothing to separate")
    gaps = [(high.mean - low.mean) / np.sqrt((low.std ** 2 + high.std ** 2) / 2)
            for low, high in zip(filled, filled[1:], strict=False)]
    return GoldBins(bins=bins, separation=float(np.mean(gaps)))


def _gold_bin(cosines: np.ndarray, low: float, high: float) -> GoldBin:
    if not cosines.size:
        return GoldBin(low, high, 0, None, None, None)
    q1, median, q3 = np.percentile(cosines, [25, 50, 75])
    return GoldBin(low, high, int(cosines.size), float(cosines.mean()), float(cosines.std()),
                   (float(q1), float(median), float(q3)))


