"""The Prometheus series of one served version's live monitoring (:mod:`.monitoring`): window
size, confidence quantiles, class shares and drift, each set or removed as a whole, so that a
version that leaves takes all of its series with it."""

from __future__ import annotations

from typing import Any

import numpy as np

from visionyard.monitor import Comparison, FeatureSample
from visionyard.serving.metrics import MonitorMetrics

QUANTILES = (0.1, 0.5, 0.9)


class Gauges:
    """One version's series in the monitor gauges, so that they can all be removed."""

    def __init__(self, metrics: MonitorMetrics, name: str, version: str) -> None:
        self.metrics, self.labels = metrics, (name, version)
        self._set: set[tuple[Any, tuple[str, ...]]] = set()

    def window(self, sample: FeatureSample) -> None:
        m = self.metrics
        self._put(m.window_size, (), sample.images)
        for q, value in quantiles(sample).items():
            self._put(m.confidence_quantile, (q,), value)
        found = shares(sample)
        for gauge, key in list(self._set):
            if gauge is m.class_share:
                found.setdefault(key[0], 0.0)  # a class gone from the window shows 0
        for label, share in found.items():
            self._put(m.class_share, (label,), share)

    def drift(self, result: Comparison | None) -> None:
        m = self.metrics
        rows = {r.feature: r for r in result.results if r.statistic is not None} if result else {}
        for gauge in (m.drift_statistic, m.drift_p_value):
            for key in [k for g, k in self._set if g is gauge and k[0] not in rows]:
                self._drop(gauge, key)
        for feature, row in rows.items():
            self._put(m.drift_statistic, (feature,), row.statistic)
            p_value = row.p_adjusted if row.p_adjusted is not None else row.p_value
            self._put(m.drift_p_value, (feature,), p_value)
        if result is None or result.verdict == "not enough data":
            self._drop(m.drift_detected, ())
        else:
            self._put(m.drift_detected, (), 1.0 if result.verdict == "drift" else 0.0)

    def remove_all(self) -> None:
        for gauge, key in list(self._set):
            self._drop(gauge, key)

    def _put(self, gauge: Any, key: tuple[str, ...], value: float | None) -> None:
        if value is None or not np.isfinite(value):
            self._drop(gauge, key)
            return
        gauge.labels(*self.labels, *key).set(value)
        self._set.add((gauge, key))

    def _drop(self, gauge: Any, key: tuple[str, ...]) -> None:
        if (gauge, key) in self._set:
            self._set.discard((gauge, key))
            gauge.remove(*self.labels, *key)


def quantiles(sample: FeatureSample) -> dict[str, float]:
    values = sample.continuous.get("confidence")
    if values is None:
        values = sample.continuous.get("score")
    if values is None or values.size == 0:
        return {}
    found = np.quantile(values, QUANTILES)
    return {str(q): float(v) for q, v in zip(QUANTILES, found, strict=True)}


def shares(sample: FeatureSample) -> dict[str, float]:
    return dict(sample.shares().get("class", {}))
