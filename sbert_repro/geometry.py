"""The geometry of an embedding space, as pure functions on (n, d) matrices: no models, no rounding, and no I/O but
a fitted transform's own file.

Why cosine between raw contextual embeddings means little, and what a siamese fine-tune changes, in numbers:
- anisotropy: the mean cosine of random pairs (near 0 for an isotropic space, high when vectors share a cone);
- alignment and uniformity (Wang & Isola, 2020) on L2-normalised vectors;
- the covariance spectrum: variance share of the top principal components, effective rank, and the "rogue
  dimensions" that carry most of the expected cosine (Timkey & van Schijndel, 2021);
- the cosine of gold-scored pairs by gold-score bin, and how well the bins separate;
- post-processing without training, fitted on one matrix and applied to others: center, whiten[-K]
  (BERT-whitening, Su et al., 2021), abtt-D (all-but-the-top, Mu & Viswanath, 2018).

Computation is in float64. A matrix with fewer than 2 rows has no pairs and no covariance: a UsageError, since it
comes from the user's sentences (one sentence in --sentences, a tiny fit set).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.distance import pdist
from scipy.special import logsumexp

from sbert_repro.errors import UsageError

logger = logging.getLogger(__name__)

# 10,000 random pairs put the standard error of a mean cosine near 0.002 even for a spread-out space.
DEFAULT_PAIRS = 10_000
# Uniformity over every pair up to this many pairs (a 3,000-sentence set has 4.5M), a seeded sample beyond.
MAX_UNIFORMITY_PAIRS = 5_000_000
PAIR_SLICE = 65_536  # sampled pairs compared at once (a slice of 768-d float64 pairs is ~0.4 GB)
GOLD_BIN_EDGES = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
POSTPROCESS_METHODS = ("center", "whiten", "abtt")
POSTPROCESS_FORMS = "center, whiten, whiten-K or abtt-D"


def _as_matrix(embeddings: np.ndarray, what: str = "the embeddings") -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be an (n, d) matrix, got shape {x.shape}")
    if x.shape[0] < 2:
        raise UsageError(f"{what}: need at least 2 vectors to measure pairs or a covariance, got {x.shape[0]}")
    return x


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


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
    unit = _normalised(_as_matrix(embeddings))
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
    x = _as_matrix(embeddings)
    first, second = sample_pairs(len(x), pairs, seed)
    return Anisotropy(mean_cosine=float(pair_cosines(x, first, second).mean()),
                      centered_mean_cosine=float(pair_cosines(x - x.mean(axis=0), first, second).mean()),
                      pairs=pairs)


def alignment(first: np.ndarray, second: np.ndarray, alpha: float = 2.0) -> float:
    """Wang & Isola's alignment: mean ||f(x) - f(y)||^alpha over positive pairs (row i of `first` with row i of
    `second`), on L2-normalised vectors. 0 when every pair is identical; at most 2^alpha. Lower is better."""
    u, v = _normalised(_as_matrix(first)), _normalised(_as_matrix(second))
    if u.shape != v.shape:
        raise ValueError(f"positive pairs need matrices of one shape, got {u.shape} and {v.shape}")
    return float(np.mean(np.linalg.norm(u - v, axis=1) ** alpha))


def uniformity(embeddings: np.ndarray, t: float = 2.0, max_pairs: int = MAX_UNIFORMITY_PAIRS,
               seed: int = 0) -> float:
    """Wang & Isola's uniformity: log mean exp(-t ||f(x) - f(y)||^2) over pairs of distinct rows, L2-normalised.

    Every unordered pair (as their torch.pdist code) while there are at most `max_pairs`, else `max_pairs` seeded
    random pairs. Lower is more uniform: -4 (= -2t) at best, 0 when all vectors coincide.
    """
    unit = _normalised(_as_matrix(embeddings))
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


def _principal_axes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, principal axes as columns, variances along them, descending) from the SVD of the covariance,
    as BERT-whitening computes them."""
    axes, variances, _ = np.linalg.svd(np.cov(x, rowvar=False))
    return x.mean(axis=0), axes, variances


def covariance_eigenvalues(embeddings: np.ndarray) -> np.ndarray:
    """The d eigenvalues of the covariance (ddof 1), descending: the spectrum to plot."""
    return _principal_axes(_as_matrix(embeddings))[2]


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
    unit = _normalised(_as_matrix(embeddings))
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


@dataclass(frozen=True)
class Postprocess:
    """A parsed --postprocess option: the method and its K (whiten) or D (abtt); None for center, plain whiten."""
    method: str
    size: int | None = None

    def __str__(self) -> str:
        return self.method if self.size is None else f"{self.method}-{self.size}"


def parse_postprocess(option: str) -> Postprocess:
    """"center", "whiten", "whiten-K" or "abtt-D" -> Postprocess; anything else a one-line UsageError.

    Limits that depend on the vectors (K at most the dimension, D below it) are checked by fit_postprocess.
    """
    match = re.fullmatch(r"([a-z]+)(?:-(.*))?", option, flags=re.DOTALL)
    method, number = (match.group(1), match.group(2)) if match else (option, None)
    if method not in POSTPROCESS_METHODS:
        raise UsageError(f"--postprocess {option!r}: unknown; give {POSTPROCESS_FORMS}")
    letter = {"whiten": "K", "abtt": "D"}.get(method)
    if letter is None:
        if number is not None:
            raise UsageError(f"--postprocess {option!r}: center takes no number; give center")
        return Postprocess(method)
    if number is None:
        if method == "abtt":
            raise UsageError(f"--postprocess {option!r}: abtt needs D, the principal components to remove: abtt-D")
        return Postprocess(method)
    if not re.fullmatch(r"[0-9]+", number) or int(number) < 1:
        raise UsageError(f"--postprocess {option!r}: {letter} must be a positive integer, "
                         f"as in {method}-{256 if method == 'whiten' else 3}")
    return Postprocess(method, int(number))


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous; compare .mean and .projection with numpy
class Transform:
    """A fitted post-processing: apply as (x - mean) @ projection. Save with np.savez(path, option=...,
    mean=..., projection=...) and rebuild with Transform(str(f["option"]), f["mean"], f["projection"])."""
    option: str  # as parsed, e.g. "whiten-256"
    mean: np.ndarray  # (d,)
    projection: np.ndarray  # (d, k): k = K for whiten-K, else d


def check_postprocess_fits(option: str | Postprocess | None, dimension: int) -> None:
    """K of whiten-K at most the vectors' dimension, D of abtt-D below it: checked as soon as the model is known
    (no --postprocess, None: nothing to check)."""
    if option is None:
        return
    spec = option if isinstance(option, Postprocess) else parse_postprocess(option)
    if spec.method == "whiten" and spec.size is not None and spec.size > dimension:
        raise UsageError(f"--postprocess {spec}: K = {spec.size} is larger than the dimension {dimension}")
    if spec.method == "abtt" and spec.size >= dimension:
        raise UsageError(f"--postprocess {spec}: D = {spec.size} must be below the dimension {dimension}")


def fit_postprocess(option: str | Postprocess, embeddings: np.ndarray) -> Transform:
    """Fit `option` on `embeddings` (the fit set; at least 2 vectors).

    center: subtract the fit set's mean. whiten[-K]: BERT-whitening, W = U sqrt(Lambda^-1) from the SVD
    U Lambda U^T of the fit set's covariance, keeping the first K columns (the top K components), so the fit set
    comes out with identity covariance. abtt-D: subtract the mean, then the projections on the top D principal
    components. Whitening needs the kept components' variances above 0: a fit set of n vectors has at most n - 1.
    """
    spec = option if isinstance(option, Postprocess) else parse_postprocess(option)
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"the fit set must be an (n, d) matrix, got shape {x.shape}")
    if len(x) < 2:
        raise UsageError(f"--postprocess {spec}: fitting needs at least 2 vectors, got {len(x)}")
    dimension = x.shape[1]
    check_postprocess_fits(spec, dimension)
    mean, axes, variances = _principal_axes(x)
    if spec.method == "center":
        return Transform(str(spec), mean, np.eye(dimension))
    if spec.method == "abtt":
        top = axes[:, :spec.size]
        return Transform(str(spec), mean, np.eye(dimension) - top @ top.T)
    # Relative to the largest: the SVD returns ~1e-16 * max for directions the fit set does not span.
    spanned = int(np.sum(variances > variances[0] * 1e-10))
    if spec.size is not None and spec.size > spanned:
        raise UsageError(f"--postprocess {spec}: the {len(x)} fit vectors span only {spanned} directions; "
                         f"give whiten-{spanned} or fewer, or fit on more sentences")
    if spec.size is None and spanned < dimension:
        # Real models do this (all-MiniLM-L6-v2's vectors span 381 of 384 directions): BERT-whitening's own code
        # would divide by ~0 there and fill those dimensions with noise; they carry nothing, so they are left out.
        logger.warning("--postprocess whiten: the %d fit vectors span %d of %d directions; whitened to those %d "
                       "(as whiten-%d)", len(x), spanned, dimension, spanned, spanned)
    kept = spec.size or spanned
    return Transform(str(spec), mean, axes[:, :kept] / np.sqrt(variances[:kept]))


def save_transform(transform: Transform, path: Path) -> None:
    """The transform as an .npz file (option, mean, projection), for load_transform."""
    np.savez(path, option=np.array(transform.option), mean=transform.mean, projection=transform.projection)


def load_transform(path: Path, option: str) -> Transform:
    """A transform saved by save_transform; a missing or foreign file is a one-line UsageError naming `option`."""
    try:
        with np.load(path) as saved:
            transform = Transform(str(saved["option"]), saved["mean"], saved["projection"])
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise UsageError(f"{option} {path}: not a transform saved by `evaluate --postprocess` "
                         f"({type(error).__name__}); give one of its postprocess/<task>.npz files") from None
    if transform.mean.ndim != 1 or transform.projection.shape[:1] != transform.mean.shape:
        raise UsageError(f"{option} {path}: its mean and projection do not fit together; it is damaged")
    return transform


def apply_transform(transform: Transform, embeddings: np.ndarray) -> np.ndarray:
    """(x - mean) @ projection, in float64. Not re-normalised: cosine normalises, a FAISS inner-product index
    needs the rows L2-normalised (and float32) again."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(transform.mean):
        raise ValueError(f"{transform.option} was fitted on {len(transform.mean)}-d vectors, got shape {x.shape}")
    return (x - transform.mean) @ transform.projection


def apply_and_normalise(transform: Transform, embeddings: np.ndarray) -> np.ndarray:
    """apply_transform, then each row scaled to unit length (a zero row stays zero), as float32 and contiguous:
    the form cosine scoring and a FAISS inner-product index take."""
    out = apply_transform(transform, embeddings)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(out, dtype=np.float32)
