"""faiss_index.build_and_compare: the one place an approximate index is built and judged against exact search
(`sbert-repro index`'s self-check, retrieval scoring with --index, benchmarks/ann.py)."""

from __future__ import annotations

import numpy as np
import pytest
from test_index import CORPUS, QUERIES, brute_force_top_k

from sbert_repro.search import faiss_index as index


def test_exact_search_is_brute_force():
    scores, rows, per_s = index.exact_search(CORPUS, QUERIES, 10)
    np.testing.assert_array_equal(rows, brute_force_top_k(CORPUS, QUERIES, 10))
    np.testing.assert_allclose(scores, np.take_along_axis(QUERIES @ CORPUS.T, rows, axis=1), rtol=1e-5)
    assert per_s > 0


def test_one_build_compared_at_each_setting_in_order(monkeypatch):
    _, exact_rows, exact_per_s = index.exact_search(CORPUS, QUERIES, 10)
    builds, original = [], index.build_timed

    def counted_build(factory: str, *args):
        builds.append(factory)
        return original(factory, *args)

    monkeypatch.setattr(index, "build_timed", counted_build)
    built = index.build_and_compare("IVF32,Flat", CORPUS, QUERIES, exact_rows, exact_per_s, train_size=4000,
                                    seed=0, settings=[index.Knobs(nprobe=1), index.Knobs(nprobe=32)])
    assert builds == ["IVF32,Flat"]  # built once for both settings
    few, all_lists = built.comparisons
    assert [few.measured["search_parameters"], all_lists.measured["search_parameters"]] == [{"nprobe": 1},
                                                                                              {"nprobe": 32}]
    assert few.measured["recall@10_vs_exact"] < all_lists.measured["recall@10_vs_exact"] == 1.0  # all lists: exact
    np.testing.assert_array_equal(all_lists.rows, exact_rows)
    assert all_lists.measured["exact_queries_per_s"] == exact_per_s and all_lists.measured["queries_per_s"] > 0
    assert built.index.nprobe == 32  # left at the last setting: what `sbert-repro index` writes
    assert built.build_s > 0 and built.bytes_per_vector == pytest.approx(index.bytes_per_vector(built.index))


def test_the_default_setting_leaves_the_index_as_faiss_builds_it():
    _, exact_rows, exact_per_s = index.exact_search(CORPUS, QUERIES, 10)
    built = index.build_and_compare("HNSW32", CORPUS, QUERIES, exact_rows, exact_per_s, train_size=4000, seed=0)
    [compared] = built.comparisons
    assert compared.measured["search_parameters"] == index.search_parameters(
        index.build_index("HNSW32", CORPUS, train_size=4000, seed=0))
    assert compared.rows.shape == exact_rows.shape == compared.scores.shape
