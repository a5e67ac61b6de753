"""Vectors at fewer dimensions: truncation, its score keys, and the --matryoshka-dims and --dims lists checked
against the model's own dimension.

A Matryoshka-trained model (MatryoshkaLoss) puts most of a sentence's meaning in the first dimensions of its
vector; any model's vector can be cut to its first d dimensions, the Matryoshka one just loses less doing so.
A cut vector is re-normalised, so that inner product (FAISS's exact index) is still cosine.
"""

from __future__ import annotations

import numpy as np

from sbert_repro.errors import UsageError


def check_dims_fit(dims: tuple[int, ...], model_dimension: int | None, option: str) -> None:
    """Every dimension at most the model's own (checked once the model is built, before any training)."""
    too_large = [dim for dim in dims if model_dimension is not None and dim > model_dimension]
    if too_large:
        raise UsageError(f"{option}: {too_large[0]} is larger than the model's {model_dimension} dimensions; "
                         f"give dimensions of at most {model_dimension}")


def truncated_dims(dims: tuple[int, ...], model_dimension: int) -> tuple[int, ...]:
    """The dimensions scored apart from the full vector (which keeps the plain "task/metric" keys)."""
    return tuple(dim for dim in dims if dim < model_dimension)


def truncate_and_normalise(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """The first `dim` dimensions of each row, scaled back to unit length (a zero row stays zero), float32 and
    contiguous as FAISS wants them."""
    if not 0 < dim <= embeddings.shape[1]:
        raise ValueError(f"cannot truncate {embeddings.shape[1]}-dimensional vectors to {dim}")
    cut = np.asarray(embeddings[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return np.ascontiguousarray(cut / np.maximum(norms, 1e-12), dtype=np.float32)


def task_key(task: str, dim: int | None) -> str:
    """A task's key prefix at a dimension: 'stsb' for the full vector, 'stsb@128' cut to 128 dimensions; scores
    are keyed '<prefix>/<metric>', so the full vector's keys name no dimension."""
    return task if dim is None else f"{task}@{dim}"


def each_dimension(embeddings: np.ndarray, dims: tuple[int, ...]) -> list[tuple[int | None, np.ndarray]]:
    """(None, the full vectors), then (d, the vectors cut to d dimensions) for each of `dims` below the full size,
    in the order given."""
    return [(None, embeddings), *((dim, truncate_and_normalise(embeddings, dim))
                                  for dim in truncated_dims(dims, embeddings.shape[1]))]
