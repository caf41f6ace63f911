"""Feature samples: what a reference profile holds and what a live window's snapshot returns.

A :class:`FeatureSample` is a plain value: one array of values per continuous feature, the
counts of every category per categorical feature, and (for models with an embedding output) a
matrix of embedding rows. :class:`SampleBuilder` collects records into one, keeping at most
``cap`` values per continuous feature and ``embedding_cap`` embedding rows by reservoir
sampling (seeded, so a profile built twice from the same images is the same); counts are exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from visionyard.monitor.features import Record

DEFAULT_CAP = 5_000
DEFAULT_EMBEDDING_CAP = 1_000


@dataclass(frozen=True)
class FeatureSample:
    """``images`` seen; ``continuous[feature]`` values; ``categorical[feature][category]``
    counts; ``embeddings`` ``[N, D]`` float32 rows or None (the model has no embedding)."""

    images: int
    continuous: Mapping[str, NDArray[np.float64]]
    categorical: Mapping[str, Mapping[str, int]]
    embeddings: NDArray[np.float32] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, records: Iterable[Record]) -> FeatureSample:
        """Every value of ``records``, uncapped (windows, tests)."""
        builder = SampleBuilder(cap=None, embedding_cap=None)
        for record in records:
            builder.add(record)
        return builder.build()

    def summary(self) -> dict[str, dict[str, float]]:
        """Per continuous feature: n, mean, std, p5, p50, p95 (what ``monitor show`` prints)."""
        return {name: _summary(values) for name, values in sorted(self.continuous.items())}

    def shares(self) -> dict[str, dict[str, float]]:
        """Per categorical feature: each category's share of its total."""
        return {
            name: {k: v / (sum(counts.values()) or 1) for k, v in sorted(counts.items())}
            for name, counts in sorted(self.categorical.items())
        }


class SampleBuilder:
    """Collect :class:`Record` s into a :class:`FeatureSample` (reservoir-capped, seeded)."""

    def __init__(
        self,
        *,
        cap: int | None = DEFAULT_CAP,
        embedding_cap: int | None = DEFAULT_EMBEDDING_CAP,
        seed: int = 0,
    ) -> None:
        self._cap, self._embedding_cap = cap, embedding_cap
        self._rng = np.random.default_rng(seed)
        self._values: dict[str, list[float]] = {}
        self._seen: Counter[str] = Counter()
        self._counts: dict[str, Counter[str]] = {}
        self._embeddings: list[NDArray[np.float32]] = []
        self._embeddings_seen = 0
        self._images = 0

    def add(self, record: Record) -> None:
        self._images += 1
        for name, values in record.numbers.items():
            kept = self._values.setdefault(name, [])
            for value in values:
                self._keep(kept, name, value)
        for name, labels in record.labels.items():
            self._counts.setdefault(name, Counter()).update(labels)
        if record.embedding is not None:
            self._keep_embedding(record.embedding)

    def build(self) -> FeatureSample:
        continuous = {k: np.asarray(v, dtype=np.float64) for k, v in sorted(self._values.items())}
        counts = {k: dict(sorted(v.items())) for k, v in sorted(self._counts.items())}
        rows = np.stack(self._embeddings).astype(np.float32) if self._embeddings else None
        return FeatureSample(self._images, continuous, counts, rows)

    def _keep(self, kept: list[float], name: str, value: float) -> None:
        self._seen[name] += 1
        slot = _slot(self._rng, self._seen[name], self._cap)
        if slot == len(kept):
            kept.append(float(value))
        elif slot is not None:
            kept[slot] = float(value)

    def _keep_embedding(self, row: NDArray[np.float32]) -> None:
        self._embeddings_seen += 1
        slot = _slot(self._rng, self._embeddings_seen, self._embedding_cap)
        flat = np.asarray(row, dtype=np.float32).reshape(-1)
        if slot == len(self._embeddings):
            self._embeddings.append(flat)
        elif slot is not None:
            self._embeddings[slot] = flat


def _slot(rng: np.random.Generator, seen: int, cap: int | None) -> int | None:
    """Reservoir sampling (algorithm R): where the ``seen``-th item goes, None to drop it."""
    if cap is None or seen <= cap:
        return seen - 1
    slot = int(rng.integers(0, seen))
    return slot if slot < cap else None


def _summary(values: NDArray[np.float64]) -> dict[str, float]:
    if values.size == 0:
        return {"n": 0.0}
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return {
        "n": float(values.size), "mean": float(values.mean()), "std": float(values.std()),
        "p5": float(p5), "p50": float(p50), "p95": float(p95),
    }  # fmt: skip
