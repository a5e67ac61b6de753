"""Post-processing without training: center, whiten[-K] (BERT-whitening, Su et al. 2021) and abtt-D ("all-but-the-top",
Mu & Viswanath 2018), fitted on a set of vectors and applied to others before the cosine. Saved beside the run as
.npz, so that an index built with a transform searches with the same one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbert_repro.config.checks import Postprocess, parse_postprocess
from sbert_repro.errors import UsageError

logger = logging.getLogger(__name__)


def as_matrix(embeddings: np.ndarray, what: str = "the embeddings") -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be an (n, d) matrix, got shape {x.shape}")
    if x.shape[0] < 2:
        raise UsageError(f"{what}: need at least 2 vectors to measure pairs or a covariance, got {x.shape[0]}")
    return x


def normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def principal_axes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, principal axes as columns, variances along them, descending) from the SVD of the covariance,
    as BERT-whitening computes them."""
    axes, variances, _ = np.linalg.svd(np.cov(x, rowvar=False))
    return x.mean(axis=0), axes, variances


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
    mean, axes, variances = principal_axes(x)
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
