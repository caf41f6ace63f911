"""Compare a window with a reference: one detector per feature, one corrected overall verdict.

Every continuous feature gets a :class:`~visionyard.monitor.detectors.KSDetector`, every
categorical one a :class:`~visionyard.monitor.detectors.ChiSquareDetector`, the embeddings an
:class:`~visionyard.monitor.detectors.MMDDetector` (or a ``"skipped"`` row saying the model has
no embedding output). Testing ~15 features at once would raise false alarms ~15-fold, so the
p-values of the features that could be tested are adjusted together with Benjamini-Hochberg
(``scipy.stats.false_discovery_control``); a feature drifts when its adjusted p-value is at most
``alpha``. When no feature drifts, Benjamini-Hochberg keeps the chance of any false alarm at
``alpha`` (its family-wise guarantee under the global null).

The overall verdict is ``"drift"`` when any feature drifts, ``"not enough data"`` when no
feature could be tested, else ``"ok"``. The permutation test's smallest p-value is
``1 / (permutations + 1)``; by default it gets enough permutations (``2 * tests / alpha``,
at most 10,000) that the embeddings alone can still pass the correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from visionyard.monitor.detectors import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_SAMPLES,
    ChiSquareDetector,
    DetectorResult,
    KSDetector,
    MMDDetector,
    Verdict,
)
from visionyard.monitor.sample import FeatureSample

EMBEDDING = "embedding"
MAX_PERMUTATIONS = 10_000


@dataclass(frozen=True)
class CompareOptions:
    """``alpha`` after correction; ``min_samples`` per side; MMD's ``permutations`` (None:
    enough for the correction), ``max_embeddings`` rows per side and ``seed``."""

    alpha: float = DEFAULT_ALPHA
    min_samples: int = DEFAULT_MIN_SAMPLES
    permutations: int | None = None
    max_embeddings: int = 300
    seed: int = 0


@dataclass(frozen=True)
class Comparison:
    """Per-feature results (sorted: drifting first, then by adjusted p-value), the overall
    verdict, the window's image count and the options used."""

    verdict: Verdict
    results: list[DetectorResult]
    window_images: int
    options: CompareOptions = field(default_factory=CompareOptions)

    @property
    def drifting(self) -> list[str]:
        return [r.feature for r in self.results if r.verdict == "drift"]

    def result(self, feature: str) -> DetectorResult:
        return next(r for r in self.results if r.feature == feature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "drifting": self.drifting,
            "window_images": self.window_images,
            "alpha": self.options.alpha,
            "correction": "benjamini-hochberg",
            "features": [_jsonable(r.to_dict()) for r in self.results],
        }


def compare(
    reference: FeatureSample, window: FeatureSample, options: CompareOptions | None = None
) -> Comparison:
    """Test every feature of ``reference`` on ``window``; see the module docstring."""
    opts = options or CompareOptions()
    results = [*_continuous(reference, window, opts), *_categorical(reference, window, opts)]
    tests = sum(1 for r in results if r.tested) + 1
    results.append(_embeddings(reference, window, opts, tests))
    corrected = _correct(results, opts.alpha)
    return Comparison(_overall(corrected), sorted(corrected, key=_order), window.images, opts)


def _continuous(
    reference: FeatureSample, window: FeatureSample, opts: CompareOptions
) -> list[DetectorResult]:
    empty = np.zeros(0, dtype=np.float64)
    return [
        KSDetector(name, opts.min_samples, opts.alpha)
        .fit(values)
        .score(window.continuous.get(name, empty))
        for name, values in reference.continuous.items()
    ]


def _categorical(
    reference: FeatureSample, window: FeatureSample, opts: CompareOptions
) -> list[DetectorResult]:
    return [
        ChiSquareDetector(name, opts.min_samples, opts.alpha)
        .fit(counts)
        .score(window.categorical.get(name, {}))
        for name, counts in reference.categorical.items()
    ]


def _embeddings(
    reference: FeatureSample, window: FeatureSample, opts: CompareOptions, tests: int
) -> DetectorResult:
    if reference.embeddings is None:
        note = "skipped: the model has no embedding output (contract embedding_output)"
        return DetectorResult(EMBEDDING, "mmd", None, None, "skipped", 0, 0, note=note)
    if window.embeddings is None:
        note = "skipped: the window holds no embeddings"
        return DetectorResult(
            EMBEDDING, "mmd", None, None, "skipped", len(reference.embeddings), 0, note=note
        )
    permutations = opts.permutations or min(MAX_PERMUTATIONS, math.ceil(2 * tests / opts.alpha))
    detector = MMDDetector(
        EMBEDDING, opts.min_samples, opts.alpha, permutations, opts.max_embeddings, opts.seed
    )
    return detector.fit(reference.embeddings).score(window.embeddings)


def _correct(results: list[DetectorResult], alpha: float) -> list[DetectorResult]:
    tested = [r for r in results if r.p_value is not None]
    if not tested:
        return results
    raw = np.array([r.p_value for r in tested], dtype=np.float64)
    adjusted = iter(stats.false_discovery_control(raw, method="bh"))
    return [r.with_adjusted(float(next(adjusted)), alpha) if r.tested else r for r in results]


def _overall(results: list[DetectorResult]) -> Verdict:
    if any(r.verdict == "drift" for r in results):
        return "drift"
    return "ok" if any(r.tested for r in results) else "not enough data"


def _order(result: DetectorResult) -> tuple[int, float, str]:
    rank = {"drift": 0, "ok": 1, "not enough data": 2, "skipped": 3}[result.verdict]
    return (rank, result.p_adjusted if result.p_adjusted is not None else 2.0, result.feature)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities become None (JSON has neither)."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()
    }
