"""Geometry measures and post-processing on hand-made vectors whose answers are known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from sbert_repro.analysis import geometry
from sbert_repro.config import checks
from sbert_repro.errors import UsageError
from sbert_repro.model import transforms

DIMENSION = 32


def isotropic(n: int = 4000, dimension: int = DIMENSION, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dimension))


def offset(n: int = 4000, dimension: int = DIMENSION, seed: int = 0) -> np.ndarray:
    """Isotropic noise around a far-away shared point: a narrow cone, as raw BERT vectors are."""
    return isotropic(n, dimension, seed) + 10.0


def test_pairs_are_distinct_seeded_and_cover_every_row():
    first, second = geometry.sample_pairs(5, 2000, seed=3)
    assert np.all(first != second)
    assert set(first) == set(second) == set(range(5))
    again = geometry.sample_pairs(5, 2000, seed=3)
    assert np.array_equal(first, again[0]) and np.array_equal(second, again[1])
    assert not np.array_equal(first, geometry.sample_pairs(5, 2000, seed=4)[0])


def test_pair_cosines_by_hand():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    cosines = geometry.pair_cosines(x, np.array([0, 0, 1]), np.array([1, 2, 2]))
    assert cosines == pytest.approx([0.0, 1 / np.sqrt(2), 1 / np.sqrt(2)])


def test_isotropic_vectors_have_no_anisotropy():
    measured = geometry.anisotropy(isotropic())
    assert abs(measured.mean_cosine) < 0.01
    assert abs(measured.centered_mean_cosine) < 0.01


def test_a_shared_offset_is_high_anisotropy_that_centering_removes():
    measured = geometry.anisotropy(offset())
    # ||offset||^2 = 32 * 100 against noise variance 32: the mean cosine is near 3200 / 3232
    assert measured.mean_cosine > 0.98
    assert abs(measured.centered_mean_cosine) < 0.01


def test_alignment_is_zero_for_identical_pairs_and_four_for_opposite_ones():
    x = isotropic(50)
    assert geometry.alignment(x, x) == pytest.approx(0.0, abs=1e-12)
    assert geometry.alignment(x, 3 * x) == pytest.approx(0.0, abs=1e-12)  # on normalised vectors
    assert geometry.alignment(x, -x) == pytest.approx(4.0)  # ||u - (-u)||^2 = 4 for unit u
    with pytest.raises(ValueError, match="one shape"):
        geometry.alignment(x, x[:-1])


def test_uniformity_is_lower_for_a_spread_out_set_than_for_a_clustered_one():
    spread, clustered = geometry.uniformity(isotropic(600)), geometry.uniformity(offset(600))
    assert spread < clustered
    assert -4.0 < spread < -3.5  # near -2t for unit vectors that are nearly orthogonal in 32 dimensions
    assert geometry.uniformity(np.ones((10, 4))) == pytest.approx(0.0)  # all vectors at one point


def test_uniformity_by_hand_and_by_sample():
    # Three unit vectors: two identical (distance 0), the third orthogonal to both (squared distance 2).
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert geometry.uniformity(x) == pytest.approx(np.log((1 + 2 * np.exp(-4)) / 3))
    every_pair = geometry.uniformity(isotropic(600))
    sampled = geometry.uniformity(isotropic(600), max_pairs=20_000, seed=1)
    assert sampled != every_pair and sampled == pytest.approx(every_pair, abs=0.02)


def test_isotropic_vectors_have_full_effective_rank_and_flat_spectrum():
    measured = geometry.spectrum(isotropic(20_000))
    assert measured.effective_rank > 0.99 * DIMENSION
    assert measured.top1_share == pytest.approx(1 / DIMENSION, rel=0.15)
    assert measured.top10_share == pytest.approx(10 / DIMENSION, rel=0.05)


def test_vectors_on_a_line_have_effective_rank_one():
    direction = np.linspace(-1, 1, DIMENSION)
    line = np.outer(np.random.default_rng(0).standard_normal(500), direction)
    measured = geometry.spectrum(line)
    assert measured.top1_share == pytest.approx(1.0)
    assert measured.effective_rank == pytest.approx(1.0, abs=1e-6)


def test_effective_rank_by_hand():
    # Variances 4, 1, 1 along the axes: shares 2/3, 1/6, 1/6.
    x = isotropic(50_000, 3) * np.array([2.0, 1.0, 1.0])
    shares = np.array([2 / 3, 1 / 6, 1 / 6])
    measured = geometry.spectrum(x)
    assert measured.top1_share == pytest.approx(2 / 3, rel=0.02)
    assert measured.effective_rank == pytest.approx(np.exp(-np.sum(shares * np.log(shares))), rel=0.01)
    eigenvalues = geometry.covariance_eigenvalues(x)
    assert eigenvalues == pytest.approx([4.0, 1.0, 1.0], rel=0.03)


def test_a_planted_rogue_dimension_comes_first_and_carries_the_cosine():
    x = isotropic(2000)
    x[:, 17] = 30.0 + 10.0 * np.random.default_rng(1).standard_normal(2000)  # large and of one sign, as in BERT
    rogue = geometry.rogue_dimensions(x, top=3)
    assert rogue.dimensions[0] == 17
    assert rogue.contributions[0] > 0.8
    assert rogue.share > 0.9
    assert rogue.mean_cosine == pytest.approx(geometry.anisotropy(x).mean_cosine)  # the same pairs
    assert len(rogue.dimensions) == len(rogue.contributions) == 3


def test_an_isotropic_space_has_no_rogue_dimension():
    rogue = geometry.rogue_dimensions(isotropic(), top=1)
    assert abs(rogue.contributions[0]) < 0.01


def test_cosine_by_gold_bin_by_hand():
    gold = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 4.0, 5.0, 4.5, 4.2])
    cosines = np.array([0.1, 0.3, 0.4, 0.6, 0.5, 0.7, 0.8, 1.0, 0.9, 0.9])
    result = geometry.cosine_by_gold_bin(cosines, gold)
    first, second, third, fourth, fifth = result.bins
    assert (first.low, first.high, first.count) == (0.0, 1.0, 2)
    assert first.mean == pytest.approx(0.2) and first.std == pytest.approx(0.1)
    assert first.quartiles == pytest.approx((0.15, 0.2, 0.25))
    assert second.count == 2 and second.mean == pytest.approx(0.5)  # gold 1.0 goes up, into [1, 2)
    assert third.count == 2 and third.mean == pytest.approx(0.6)
    assert fourth.count == 0 and fourth.mean is None and fourth.std is None and fourth.quartiles is None
    # gold 4.0, 4.2, 4.5 and 5.0 (the last edge stays in the last bin)
    assert fifth.count == 4 and fifth.mean == pytest.approx(0.9)
    assert fifth.std == pytest.approx(np.sqrt(0.02 / 4))
    assert fifth.quartiles == pytest.approx((0.875, 0.9, 0.925))
    # Adjacent non-empty bins: gap / sqrt((s_low^2 + s_high^2) / 2), with every std 0.1 but the last one's.
    gaps = [0.3 / 0.1, 0.1 / 0.1, 0.3 / np.sqrt((0.01 + 0.005) / 2)]
    assert result.separation == pytest.approx(np.mean(gaps))


def test_separation_ignores_affine_maps_and_grows_with_separated_bins():
    gold = np.repeat(np.arange(5) + 0.5, 40)
    noise = np.random.default_rng(0).standard_normal(gold.size)
    tight = geometry.cosine_by_gold_bin(gold / 5 + 0.05 * noise, gold).separation
    loose = geometry.cosine_by_gold_bin(gold / 5 + 0.5 * noise, gold).separation
    squeezed = geometry.cosine_by_gold_bin(0.9 + 0.02 * (gold / 5 + 0.05 * noise), gold).separation
    assert tight > 5 * loose
    assert squeezed == pytest.approx(tight)


def test_cosine_by_gold_bin_refuses_scores_outside_the_bins():
    with pytest.raises(ValueError, match="gold scores must lie"):
        geometry.cosine_by_gold_bin(np.array([0.1, 0.2]), np.array([1.0, 5.5]))
    with pytest.raises(ValueError, match="fewer than two bins"):
        geometry.cosine_by_gold_bin(np.array([0.1, 0.2]), np.array([1.0, 1.5]))


def test_center_removes_the_fit_sets_mean_from_other_sets():
    fit, other = offset(seed=0), offset(seed=1)
    transform = transforms.fit_postprocess("center", fit)
    assert transform.option == "center"
    assert np.allclose(transforms.apply_transform(transform, fit).mean(axis=0), 0.0)
    assert np.allclose(transforms.apply_transform(transform, other), other - fit.mean(axis=0))


def correlated(n: int = 3000, dimension: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dimension)) @ rng.standard_normal((dimension, dimension)) + 5.0


def test_whitening_gives_identity_covariance_on_its_fit_set():
    fit = correlated()
    assert not np.allclose(np.cov(fit, rowvar=False), np.eye(16), atol=1e-6)
    whitened = transforms.apply_transform(transforms.fit_postprocess("whiten", fit), fit)
    assert whitened.shape == fit.shape
    assert np.allclose(np.cov(whitened, rowvar=False), np.eye(16), atol=1e-8)
    assert np.allclose(whitened.mean(axis=0), 0.0, atol=1e-8)


def test_whiten_k_keeps_the_top_k_components_whitened():
    fit = correlated()
    transform = transforms.fit_postprocess("whiten-4", fit)
    assert transform.option == "whiten-4" and transform.projection.shape == (16, 4)
    reduced = transforms.apply_transform(transform, fit)
    assert reduced.shape == (3000, 4)
    assert np.allclose(np.cov(reduced, rowvar=False), np.eye(4), atol=1e-8)
    assert transforms.apply_transform(transform, correlated(500, seed=1)).shape == (500, 4)  # applied to others
    # The kept directions are the top 4 principal components: projecting back recovers their variance.
    top_variance = geometry.covariance_eigenvalues(fit)[:4]
    assert np.allclose(np.linalg.norm(transform.projection, axis=0) ** -2, top_variance)


def test_abtt_removes_the_top_directions():
    fit = correlated()
    eigenvalues = geometry.covariance_eigenvalues(fit)
    transform = transforms.fit_postprocess("abtt-3", fit)
    processed = transforms.apply_transform(transform, fit)
    assert processed.shape == fit.shape
    left = geometry.covariance_eigenvalues(processed)
    # Three directions of zero variance now; the others untouched.
    assert np.allclose(left[-3:], 0.0, atol=1e-8)
    assert np.allclose(left[:-3], eigenvalues[3:])
    top = np.linalg.svd(np.cov(fit, rowvar=False))[0][:, :3]
    assert np.allclose(transforms.apply_transform(transform, correlated(seed=2)) @ top, 0.0, atol=1e-8)


def test_a_transform_survives_a_numpy_round_trip(tmp_path):
    fit = correlated()
    transform = transforms.fit_postprocess("whiten-8", fit)
    path = tmp_path / "postprocess.npz"
    np.savez(path, option=transform.option, mean=transform.mean, projection=transform.projection)
    with np.load(path) as saved:
        loaded = transforms.Transform(str(saved["option"]), saved["mean"], saved["projection"])
    assert loaded.option == "whiten-8"
    assert np.array_equal(transforms.apply_transform(loaded, fit), transforms.apply_transform(transform, fit))


@pytest.mark.parametrize(("option", "parsed"), [
    ("center", checks.Postprocess("center")),
    ("whiten", checks.Postprocess("whiten")),
    ("whiten-256", checks.Postprocess("whiten", 256)),
    ("abtt-3", checks.Postprocess("abtt", 3)),
])
def test_option_strings_parse(option, parsed):
    assert checks.parse_postprocess(option) == parsed
    assert str(parsed) == option


@pytest.mark.parametrize(("option", "message"), [
    ("pca", "unknown"), ("Whiten", "unknown"), ("", "unknown"), ("pca-3", "unknown"),
    ("whiten-0", "positive integer"), ("whiten--1", "positive integer"), ("whiten-1.5", "positive integer"),
    ("whiten-", "positive integer"), ("whiten-abc", "positive integer"), ("abtt-0", "positive integer"),
    ("abtt-x", "positive integer"), ("abtt", "needs D"), ("center-2", "takes no number"),
    ("whiten-2\n3", "positive integer"),
])
def test_bad_option_strings_are_one_usage_error_line(option, message):
    with pytest.raises(UsageError, match=message) as raised:
        checks.parse_postprocess(option)
    assert "\n" not in str(raised.value) and "--postprocess" in str(raised.value)


@pytest.mark.parametrize(("option", "vectors", "message"), [
    ("whiten-17", correlated(100), "larger than the dimension 16"),
    ("abtt-16", correlated(100), "below the dimension 16"),
    ("center", correlated(1), "at least 2 vectors, got 1"),
    ("whiten", correlated(1), "at least 2 vectors, got 1"),
    ("whiten-12", correlated(10), "give whiten-9 or fewer"),
])
def test_options_that_do_not_fit_the_vectors_are_one_usage_error_line(option, vectors, message):
    with pytest.raises(UsageError, match=message) as raised:
        transforms.fit_postprocess(option, vectors)
    assert "\n" not in str(raised.value)


def test_plain_whiten_of_vectors_spanning_fewer_directions_keeps_those_with_a_warning(caplog):
    # 10 vectors in 16 dimensions span 9 directions (a singular covariance), as a real model's vectors can
    vectors = correlated(10)
    transform = transforms.fit_postprocess("whiten", vectors)
    assert transform.projection.shape == (16, 9) and transform.option == "whiten"
    assert "span 9 of 16 directions; whitened to those 9" in caplog.text
    whitened = transforms.apply_transform(transform, vectors)
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(9), atol=1e-8)


def test_whiten_k_up_to_the_spanned_directions_fits_a_small_set():
    transform = transforms.fit_postprocess("whiten-9", correlated(10))
    assert transform.projection.shape == (16, 9)
    assert transforms.fit_postprocess("whiten-16", correlated(100)).projection.shape == (16, 16)
    assert transforms.fit_postprocess("abtt-15", correlated(100)).projection.shape == (16, 16)


@pytest.mark.parametrize("measure", [
    geometry.anisotropy, geometry.uniformity, geometry.spectrum, geometry.rogue_dimensions,
    lambda x: geometry.alignment(x, x),
])
def test_one_vector_is_one_usage_error_line(measure):
    with pytest.raises(UsageError, match="at least 2 vectors") as raised:
        measure(np.ones((1, 4)))
    assert "\n" not in str(raised.value)
