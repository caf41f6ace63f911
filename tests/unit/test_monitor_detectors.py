"""Drift detectors on synthetic data whose answer is known, and the corrected compare."""

from __future__ import annotations

import numpy as np
import pytest

from visionyard.monitor import (
    ChiSquareDetector,
    CompareOptions,
    FeatureSample,
    KSDetector,
    MMDDetector,
    compare,
)
from visionyard.monitor.detectors import mmd_permutation_test, mmd_test, psi_continuous

RNG_SEED = 20260101


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def test_ks_flags_a_shift_and_passes_the_same_distribution_at_about_alpha(
    rng: np.random.Generator,
) -> None:
    detector = KSDetector("x", alpha=0.05).fit(rng.normal(0, 1, 2000))
    verdicts = [detector.score(rng.normal(0, 1, 100)).verdict for _ in range(200)]
    assert 0.005 <= verdicts.count("drift") / 200 <= 0.10
    shifted = detector.score(rng.normal(0.6, 1, 100))
    assert shifted.verdict == "drift"
    assert shifted.p_value is not None
    assert shifted.p_value < 1e-4
    assert (shifted.reference_n, shifted.window_n) == (2000, 100)


def test_too_few_values_are_not_enough_data_never_drift(rng: np.random.Generator) -> None:
    detector = KSDetector("x", min_samples=30).fit(rng.normal(0, 1, 1000))
    result = detector.score(rng.normal(50, 1, 29))
    assert result.verdict == "not enough data"
    assert result.p_value is None
    assert "at least 30" in result.note
    assert KSDetector("x").fit(np.zeros(0)).score(rng.normal(0, 1, 500)).verdict == (
        "not enough data"
    )
    assert KSDetector("x").fit(np.ones(100)).score(np.array([np.nan] * 100)).window_n == 0


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift(
    rng: np.random.Generator,
) -> None:
    reference = rng.normal(0, 1, 5000)
    assert psi_continuous(reference, rng.normal(0, 1, 2000)) < 0.05
    assert psi_continuous(reference, rng.normal(1, 1, 2000)) > 0.25


def test_chi_square_sees_a_class_mix_shift_and_not_the_same_mix(
    rng: np.random.Generator,
) -> None:
    reference = {"a": 500, "b": 500}
    detector = ChiSquareDetector("class", alpha=0.05).fit(reference)
    alarms = 0
    for _ in range(200):
        a = int(rng.binomial(200, 0.5))
        alarms += detector.score({"a": a, "b": 200 - a}).verdict == "drift"
    assert alarms / 200 <= 0.10
    shifted = detector.score({"a": 180, "b": 20})
    assert shifted.verdict == "drift"
    assert shifted.psi is not None
    assert shifted.psi > 0.25


def test_chi_square_handles_zero_counts() -> None:
    detector = ChiSquareDetector("encoding").fit({"png": 100, "jpeg": 0, "webp": 0})
    same = detector.score({"png": 50})
    assert (same.verdict, same.statistic, same.p_value) == ("ok", 0.0, 1.0)  # one category
    new = detector.score({"png": 20, "jpeg": 30})  # a category the reference never had
    assert new.verdict == "drift"
    assert np.isfinite(new.statistic or np.nan)


def test_mmd_finds_a_shift_in_embeddings_and_not_in_the_same_distribution(
    rng: np.random.Generator,
) -> None:
    reference = rng.normal(0, 1, (300, 16)).astype(np.float32)
    detector = MMDDetector("embedding", alpha=0.05, permutations=200).fit(reference)
    verdicts = [
        detector.score(rng.normal(0, 1, (60, 16)).astype(np.float32)).verdict for _ in range(40)
    ]
    assert verdicts.count("drift") <= 6  # ~5 % expected
    shifted = detector.score(rng.normal(0.5, 1, (60, 16)).astype(np.float32))
    assert shifted.verdict == "drift"
    assert shifted.p_value == pytest.approx(1 / 201)  # nothing permuted was as extreme
    assert detector.score(reference[:10]).verdict == "not enough data"


def test_mmd_is_seeded_and_zero_for_identical_samples(rng: np.random.Generator) -> None:
    x = rng.normal(0, 1, (50, 4)).astype(np.float32)
    y = rng.normal(0, 1, (50, 4)).astype(np.float32)
    assert mmd_test(x, y, 100, seed=3) == mmd_test(x, y, 100, seed=3)
    statistic, p_value = mmd_test(x, x, 100)
    assert statistic == pytest.approx(0.0, abs=1e-6)
    assert p_value == 1.0


def test_mmd_stops_permuting_once_alpha_is_out_of_reach_with_the_full_tests_verdict(
    rng: np.random.Generator,
) -> None:
    """Under no drift (the usual case in production) the permutation test stops as soon as
    its p-value can no longer reach alpha, which makes the drift check cheap on the serving
    host; a shifted window still gets every permutation and the full test's exact p-value."""
    reference = rng.normal(0, 1, (200, 8)).astype(np.float32)
    same = rng.normal(0, 1, (200, 8)).astype(np.float32)
    shifted = rng.normal(0.4, 1, (200, 8)).astype(np.float32)
    stat, p_full, done = mmd_permutation_test(reference, same, 3000, seed=1)
    assert done == 3000
    stat_s, p_seq, done_s = mmd_permutation_test(reference, same, 3000, seed=1, stop_above=0.01)
    assert done_s < 3000
    assert stat_s == stat
    assert (p_seq <= 0.01) == (p_full <= 0.01)
    assert p_seq == pytest.approx(p_full, abs=0.1)
    full = mmd_permutation_test(reference, shifted, 3000, seed=1)
    assert mmd_permutation_test(reference, shifted, 3000, seed=1, stop_above=0.01) == full
    assert full[1] == pytest.approx(1 / 3001)
    detector = MMDDetector("embedding", alpha=0.01, permutations=3000).fit(reference)
    result = detector.score(same)
    assert result.verdict == "ok"
    assert "stopped" in (result.note or "")


def sample(
    rng: np.random.Generator, n: int, *, shift: float = 0.0, mix: float = 0.5, dim: int = 0
) -> FeatureSample:
    """Six continuous features (the first shifted by ``shift``), a discrete one, a class mix
    with share ``mix`` of class a, a constant flag, and optional embeddings."""
    continuous = {f"f{i}": rng.normal(shift if i == 0 else 0.0, 1, n) for i in range(6)}
    continuous["boxes"] = rng.poisson(3, n).astype(np.float64)
    a = int(rng.binomial(n, mix))
    counts = {"class": {"a": a, "b": n - a}, "grey": {"no": n}}
    embeddings = rng.normal(0, 1, (n, dim)).astype(np.float32) if dim else None
    return FeatureSample(n, continuous, counts, embeddings)


def test_compare_false_alarm_rate_over_200_no_shift_windows_is_at_most_one_percent(
    rng: np.random.Generator,
) -> None:
    reference = sample(rng, 5000)
    verdicts = [compare(reference, sample(rng, 100)).verdict for _ in range(200)]
    assert verdicts.count("drift") / 200 <= 0.01
    assert set(verdicts) <= {"ok", "drift"}


def test_compare_names_the_shifted_feature_and_corrects_p_values(
    rng: np.random.Generator,
) -> None:
    reference = sample(rng, 5000)
    result = compare(reference, sample(rng, 200, shift=1.0, mix=0.9))
    assert result.verdict == "drift"
    assert set(result.drifting) == {"f0", "class"}
    assert result.results[0].verdict == "drift"  # drifting rows first
    for row in result.results:
        if row.p_value is not None:
            assert row.p_adjusted is not None
            assert row.p_adjusted >= row.p_value
    body = result.to_dict()
    assert body["verdict"] == "drift"
    assert body["correction"] == "benjamini-hochberg"


def test_compare_skips_embeddings_the_model_does_not_have_and_says_so(
    rng: np.random.Generator,
) -> None:
    result = compare(sample(rng, 500), sample(rng, 100))
    row = result.result("embedding")
    assert row.verdict == "skipped"
    assert "no embedding output" in row.note


def test_compare_tests_embeddings_when_both_sides_have_them(rng: np.random.Generator) -> None:
    reference = sample(rng, 400, dim=8)
    window = sample(rng, 100, dim=8)
    assert window.embeddings is not None
    window = FeatureSample(
        window.images, window.continuous, window.categorical, window.embeddings + 0.6
    )
    result = compare(reference, window)
    assert result.drifting == ["embedding"]
    assert "permutations" in result.result("embedding").note


def test_a_tiny_window_is_not_enough_data_overall(rng: np.random.Generator) -> None:
    result = compare(sample(rng, 1000), sample(rng, 5, shift=10.0), CompareOptions(min_samples=30))
    assert result.verdict == "not enough data"
    assert result.drifting == []
    empty = compare(sample(rng, 1000), FeatureSample(0, {}, {}))
    assert empty.verdict == "not enough data"
