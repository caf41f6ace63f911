"""A drift report: a version's reference profile against a live sample, as data and as HTML.

:func:`build_report` gathers what an operator wants to see into a :class:`Report` (a plain
value): the comparison (overall verdict, per-feature statistic, p-value, PSI, verdict),
reference-vs-live histograms of every continuous feature, the mix of every categorical
feature (the class mix first), the confidence distribution, and a 2-D projection of the
embeddings when the model has an embedding output. :meth:`Report.to_dict` is the ``--json``
form; :func:`report_html` (:mod:`visionyard.monitor.report_html`) renders a self-contained
page, every plot a base64 PNG (matplotlib, Agg canvas, imported only there), no external URL.

The projection is PCA by numpy's SVD, fitted on the reference rows (centred on their mean) and
applied to both sides, so live points far from the reference cloud stand out. Written by hand:
two lines of numpy; scikit-learn would be a new dependency for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from visionyard.monitor.compare import Comparison
from visionyard.monitor.profile import Profile
from visionyard.monitor.sample import FeatureSample

BINS = 30
MAX_POINTS = 500
MAX_CATEGORIES = 20
CONFIDENCE = ("confidence", "score")  # classification top-1 / detection box scores


@dataclass(frozen=True)
class Histogram:
    """Shared bin ``edges`` and each side's share of values per bin (``n`` values each)."""

    edges: list[float]
    reference: list[float]
    live: list[float]
    reference_n: int
    live_n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges, "reference": self.reference, "live": self.live,
            "reference_n": self.reference_n, "live_n": self.live_n,
        }  # fmt: skip


@dataclass(frozen=True)
class Projection:
    """Embedding rows of both sides on the reference's first two principal axes."""

    reference: NDArray[np.float64]
    live: NDArray[np.float64] | None
    explained: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "pca (numpy svd, fitted on the reference)",
            "explained_variance": list(self.explained),
            "reference": _rounded(self.reference),
            "live": None if self.live is None else _rounded(self.live),
        }


@dataclass(frozen=True)
class Report:
    """Everything a drift report shows; ``about`` names the model, version and live side."""

    about: dict[str, Any]
    comparison: Comparison
    histograms: dict[str, Histogram]
    mixes: dict[str, dict[str, tuple[float, float]]]
    confidence: tuple[str, Histogram] | None
    projection: Projection | None
    embedding_note: str = ""
    plots: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.comparison.verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.about, **self.comparison.to_dict(),
            "histograms": {k: h.to_dict() for k, h in self.histograms.items()},
            "mixes": {k: {c: {"reference": r, "live": v} for c, (r, v) in mix.items()}
                      for k, mix in self.mixes.items()},
            "confidence": None if self.confidence is None
            else {"feature": self.confidence[0], **self.confidence[1].to_dict()},
            "embeddings": {"projection": self.projection.to_dict() if self.projection else None,
                           "note": self.embedding_note},
            "plots": self.plots,
        }  # fmt: skip


def build_report(
    profile: Profile,
    live: FeatureSample,
    comparison: Comparison,
    about: dict[str, Any] | None = None,
) -> Report:
    """The report of ``live`` against ``profile`` (``comparison``: their :func:`compare`)."""
    reference = profile.sample
    meta = {
        "model": profile.meta.get("model"), "version": profile.meta.get("version"),
        **(about or {}), "reference_images": reference.images, "live_images": live.images,
        "profile_created": profile.meta.get("created"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    confidence = _confidence(reference, live)
    skip = {confidence[0]} if confidence else set()
    histograms = {
        name: histogram(values, live.continuous.get(name, _EMPTY))
        for name, values in reference.continuous.items()
        if name not in skip
    }
    mixes = {name: _mix(reference, live, name) for name in _categorical_order(reference)}
    projection, note = _projection(reference, live)
    plots = [
        *(f"histogram: {name}" for name in histograms),
        *(f"mix: {name}" for name in mixes),
        *([f"confidence: {confidence[0]}"] if confidence else []),
        *(["embeddings: 2-D projection"] if projection else []),
    ]
    return Report(meta, comparison, histograms, mixes, confidence, projection, note, plots)


_EMPTY: NDArray[np.float64] = np.zeros(0, dtype=np.float64)


def histogram(reference: NDArray[np.float64], live: NDArray[np.float64]) -> Histogram:
    """Both sides on shared bins spanning the 0.5th to 99.5th percentile of the pooled values."""
    ref = reference[np.isfinite(reference)]
    new = live[np.isfinite(live)]
    pooled = np.concatenate([ref, new])
    if pooled.size == 0:
        return Histogram([0.0, 1.0], [0.0], [0.0], 0, 0)
    low, high = (float(v) for v in np.percentile(pooled, [0.5, 99.5]))
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, BINS + 1)
    return Histogram(
        [round(float(e), 6) for e in edges], _shares(ref, edges), _shares(new, edges),
        int(ref.size), int(new.size),
    )  # fmt: skip


def _shares(values: NDArray[np.float64], edges: NDArray[np.float64]) -> list[float]:
    if values.size == 0:
        return [0.0] * (len(edges) - 1)
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return [round(float(c) / values.size, 6) for c in counts]


def _confidence(reference: FeatureSample, live: FeatureSample) -> tuple[str, Histogram] | None:
    for name in CONFIDENCE:
        if name in reference.continuous:
            return name, histogram(reference.continuous[name], live.continuous.get(name, _EMPTY))
    return None


def _categorical_order(reference: FeatureSample) -> list[str]:
    """Categorical features, the class mix first."""
    return sorted(reference.categorical, key=lambda name: (name != "class", name))


def _mix(
    reference: FeatureSample, live: FeatureSample, name: str
) -> dict[str, tuple[float, float]]:
    ref = reference.shares().get(name, {})
    new = live.shares().get(name, {})
    labels = sorted(set(ref) | set(new), key=lambda k: (-max(ref.get(k, 0), new.get(k, 0)), k))
    return {
        k: (round(ref.get(k, 0.0), 6), round(new.get(k, 0.0), 6)) for k in labels[:MAX_CATEGORIES]
    }


def _projection(reference: FeatureSample, live: FeatureSample) -> tuple[Projection | None, str]:
    rows = reference.embeddings
    if rows is None:
        return None, "the model has no embedding output (contract embedding_output)"
    if len(rows) < 3 or rows.shape[1] < 2:
        return None, f"too few embedding rows or dimensions to project ({rows.shape})"
    ref = _subsample(np.asarray(rows, dtype=np.float64))
    mean = ref.mean(axis=0)
    _, singular, axes = np.linalg.svd(ref - mean, full_matrices=False)
    components = axes[:2]
    power = singular**2 / (float((singular**2).sum()) or 1.0)
    new = live.embeddings
    live_xy = (
        None if new is None else (_subsample(np.asarray(new, np.float64)) - mean) @ components.T
    )
    note = "" if new is not None else "the live images gave no embeddings"
    explained = (float(power[0]), float(power[1]))
    return Projection((ref - mean) @ components.T, live_xy, explained), note


def _subsample(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    if len(rows) <= MAX_POINTS:
        return rows
    keep = np.random.default_rng(0).choice(len(rows), MAX_POINTS, replace=False)
    return rows[np.sort(keep)]


def _rounded(points: NDArray[np.float64]) -> list[list[float]]:
    return [[round(float(x), 5) for x in row] for row in points]
