"""The drift report's content (histograms, mixes, projection) and its self-contained HTML."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from visionyard.monitor import FeatureSample, Profile, compare
from visionyard.monitor.report import MAX_POINTS, Report, build_report, histogram
from visionyard.monitor.report_html import report_html


def sample(
    n: int, shift: float, classes: dict[str, int], embeddings: bool, seed: int
) -> FeatureSample:
    rng = np.random.default_rng(seed)
    continuous = {
        "brightness_r": rng.normal(100 - shift, 10, n),
        "contrast": rng.normal(40, 5, n),
        "confidence": np.clip(rng.normal(0.9 - shift / 200, 0.05, n), 0, 1),
    }
    rows = rng.normal(shift / 40, 1, (n, 6)).astype(np.float32) if embeddings else None
    return FeatureSample(n, continuous, {"encoding": {"png": n}, "class": classes}, rows)


def report(*, embeddings: bool = True, shift: float = 40.0) -> Report:
    reference = sample(300, 0, {"a": 150, "b": 150}, embeddings, 0)
    live = sample(120, shift, {"a": 100, "b": 10, "c": 10}, embeddings, 1)
    profile = Profile({"model": "m", "version": "3"}, reference)
    return build_report(profile, live, compare(reference, live), {"live": "folder x"})


def test_histograms_share_bins_and_each_side_sums_to_one() -> None:
    hist = histogram(np.arange(100, dtype=np.float64), np.arange(50, 150, dtype=np.float64))
    assert len(hist.edges) == len(hist.reference) + 1 == len(hist.live) + 1
    assert sum(hist.reference) == pytest.approx(1.0)
    assert sum(hist.live) == pytest.approx(1.0)
    assert hist.reference[-1] < hist.live[-1]  # the live side sits higher


def test_a_constant_feature_still_gets_a_bin() -> None:
    hist = histogram(np.full(10, 3.0), np.full(5, 3.0))
    assert hist.edges[0] < 3.0 < hist.edges[-1]
    assert sum(hist.live) == pytest.approx(1.0)


def test_report_content_names_the_drift_and_the_mixes() -> None:
    built = report()
    body = built.to_dict()
    assert body["verdict"] == "drift"
    assert body["model"] == "m"
    assert body["live"] == "folder x"
    assert "brightness_r" in body["drifting"]
    assert set(body["histograms"]) == {"brightness_r", "contrast"}  # confidence on its own
    assert body["confidence"]["feature"] == "confidence"
    assert list(body["mixes"]) == ["class", "encoding"]  # the class mix first
    assert body["mixes"]["class"]["c"] == {
        "reference": 0.0,
        "live": pytest.approx(10 / 120, abs=1e-6),
    }
    json.dumps(body, allow_nan=False)  # plain JSON: no NaN, no numpy types


def test_embeddings_are_projected_on_the_reference_axes() -> None:
    projection = report().to_dict()["embeddings"]["projection"]
    assert len(projection["reference"]) == 300
    assert len(projection["live"]) == 120
    assert all(len(point) == 2 for point in projection["live"])
    first, second = projection["explained_variance"]
    assert 0 < second <= first <= 1
    reference = np.array(projection["reference"])
    assert np.allclose(reference.mean(axis=0), 0, atol=1e-4)  # centred on the reference


def test_many_embedding_rows_are_subsampled() -> None:
    reference = sample(MAX_POINTS + 200, 0, {"a": 1}, True, 0)
    built = build_report(Profile({}, reference), reference, compare(reference, reference))
    assert built.projection is not None
    assert len(built.projection.reference) == MAX_POINTS


def test_a_model_without_embeddings_says_so() -> None:
    built = report(embeddings=False)
    assert built.projection is None
    assert "no embedding output" in built.embedding_note
    assert "embeddings: 2-D projection" not in built.plots
    assert "the model has no embedding output" in report_html(built)


def test_html_is_self_contained_with_one_image_per_plot() -> None:
    built = report()
    page = report_html(built)
    assert page.startswith("<!doctype html>")
    assert page.count("<img") == len(built.plots) == 6
    assert len(re.findall(r"src='data:image/png;base64,[A-Za-z0-9+/=]{200,}'", page)) == 6
    assert "http://" not in page
    assert "https://" not in page
    assert "background:#c0392b'>drift</span>" in page
    assert "<td>brightness_r</td>" in page


def test_html_escapes_what_it_shows() -> None:
    reference = sample(50, 0, {"<b>x</b>": 50}, False, 0)
    profile = Profile({"model": "<script>", "version": "1"}, reference)
    page = report_html(build_report(profile, reference, compare(reference, reference)))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
