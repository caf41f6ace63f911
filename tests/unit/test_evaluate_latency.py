"""Latency report: percentile arithmetic with a fake clock, and real timing fields."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from visionyard.bundle.store import Bundle
from visionyard.evaluate import measure_latency
from visionyard.runtime import InferenceSession


def fake_clock(durations: list[float]) -> Iterator[float]:
    """start/stop pairs whose differences are ``durations`` (seconds)."""
    now = 0.0
    for duration in durations:
        yield now
        now += duration
        yield now
        now += 100.0  # time between measurements must not count


def test_percentiles_and_throughput_from_a_fake_clock(colour_bundle: Bundle) -> None:
    batch1 = [0.001 * n for n in range(1, 11)]  # 1..10 ms
    batch16 = [0.004, 0.004]  # 32 images in 8 ms
    ticks = fake_clock(batch1 + batch16)
    report = measure_latency(
        InferenceSession.open(colour_bundle),
        warmup=2,
        iterations=10,
        throughput_iterations=2,
        clock=lambda: next(ticks),
    )
    assert report.p50_ms == pytest.approx(5.5)
    assert report.p90_ms == pytest.approx(9.1)
    assert report.mean_ms == pytest.approx(5.5)
    assert report.throughput_images_per_s == pytest.approx(32 / 0.008)
    assert (report.warmup, report.iterations, report.throughput_batch_size) == (2, 10, 16)


def test_real_timing(colour_bundle: Bundle) -> None:
    report = measure_latency(InferenceSession.open(colour_bundle), warmup=1, iterations=5)
    assert 0 < report.p50_ms <= report.p90_ms
    assert report.throughput_images_per_s > 0
    assert report.variant == "fp32"
    assert report.providers == ["CPUExecutionProvider"]
    assert set(report.metrics()) == {
        "latency_p50_ms",
        "latency_p90_ms",
        "throughput_images_per_s",
    }


def test_invalid_settings(colour_bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="iterations"):
        measure_latency(InferenceSession.open(colour_bundle), iterations=0)
