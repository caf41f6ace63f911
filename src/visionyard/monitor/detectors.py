"""Drift detectors behind one interface: ``fit(reference)`` then ``score(window)``.

- :class:`KSDetector`: two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) for a
  continuous feature; the population stability index (PSI, ten reference-quantile bins) is
  reported beside it as a figure, not a verdict.
- :class:`ChiSquareDetector`: chi-square test of homogeneity (``scipy.stats.chi2_contingency``)
  of a categorical feature's counts, reference row against window row. Categories absent from
  both are dropped; a category only one side has stays (that is the drift); when one category
  is left there is nothing to test (statistic 0, p = 1). PSI is reported too.
- :class:`MMDDetector`: kernel two-sample test on embedding rows: the (biased) squared maximum
  mean discrepancy with an RBF kernel whose bandwidth is the median pairwise distance of the
  pooled sample (median heuristic), p-value from ``permutations`` seeded label permutations
  (in batches, each one matrix product; the test stops once its p-value cannot reach alpha, so
  a window without drift costs one batch, not thousands of permutations). Written here
  because no well-kept, permissively licensed library offers it: alibi-detect has one but is
  under the Business Source License, torch-two-sample is unmaintained, and scipy has none.

A window (or reference) with fewer than ``min_samples`` values is ``"not enough data"``, never
``"drift"``. PSI is computed by hand: it is a few lines of arithmetic, and no library here has it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Protocol, Self, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy import stats

Verdict = Literal["drift", "ok", "not enough data", "skipped"]
DEFAULT_MIN_SAMPLES = 30
DEFAULT_ALPHA = 0.005  # half the 1 % false-alarm budget: BH keeps FWER <= alpha
_PSI_FLOOR = 1e-4
_Data = TypeVar("_Data", contravariant=True)


@dataclass(frozen=True)
class DetectorResult:
    """One feature's test: ``statistic`` and ``p_value`` (None without a test), the verdict,
    how many values each side had, the PSI figure, and ``p_adjusted`` once :func:`compare`
    has corrected for testing many features."""

    feature: str
    test: str
    statistic: float | None
    p_value: float | None
    verdict: Verdict
    reference_n: int
    window_n: int
    psi: float | None = None
    p_adjusted: float | None = None
    note: str = ""

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    def with_adjusted(self, p_adjusted: float, alpha: float) -> DetectorResult:
        verdict: Verdict = "drift" if p_adjusted <= alpha else "ok"
        return replace(self, p_adjusted=p_adjusted, verdict=verdict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Detector(Protocol[_Data]):
    """``fit(reference)`` returns the fitted detector; ``score(window)`` tests a window."""

    feature: str

    def fit(self, reference: _Data) -> Self: ...

    def score(self, window: _Data) -> DetectorResult: ...


@dataclass
class _Base:
    feature: str
    min_samples: int = DEFAULT_MIN_SAMPLES
    alpha: float = DEFAULT_ALPHA

    def _short(self, test: str, reference_n: int, window_n: int) -> DetectorResult | None:
        """The "not enough data" result when either side is below ``min_samples``."""
        if min(reference_n, window_n) >= self.min_samples:
            return None
        note = f"needs at least {self.min_samples} values on each side"
        return DetectorResult(
            self.feature, test, None, None, "not enough data", reference_n, window_n, note=note
        )

    def _verdict(self, p_value: float) -> Verdict:
        return "drift" if p_value <= self.alpha else "ok"


@dataclass
class KSDetector(_Base):
    """Kolmogorov-Smirnov on a continuous feature's values."""

    _reference: NDArray[np.float64] | None = None
    _edges: NDArray[np.float64] | None = None

    def fit(self, reference: NDArray[np.float64]) -> Self:
        self._reference = _finite(reference)
        self._edges = psi_edges(self._reference) if self._reference.size else None
        return self

    def score(self, window: NDArray[np.float64]) -> DetectorResult:
        reference, values = _fitted(self._reference), _finite(window)
        short = self._short("ks", reference.size, values.size)
        if short is not None:
            return short
        result = stats.ks_2samp(reference, values)  # exact for small windows: faster too
        statistic, p_value = float(result.statistic), float(result.pvalue)
        return DetectorResult(
            self.feature, "ks", statistic, p_value, self._verdict(p_value), reference.size,
            values.size, psi=psi_continuous(reference, values, self._edges),
        )  # fmt: skip


@dataclass
class ChiSquareDetector(_Base):
    """Chi-square test of homogeneity on a categorical feature's counts."""

    _reference: dict[str, int] | None = None

    def fit(self, reference: Mapping[str, int]) -> Self:
        self._reference = {k: int(v) for k, v in reference.items()}
        return self

    def score(self, window: Mapping[str, int]) -> DetectorResult:
        reference = _fitted(self._reference)
        categories = sorted(k for k in {*reference, *window} if reference.get(k) or window.get(k))
        table = np.array([[reference.get(k, 0) for k in categories],
                          [window.get(k, 0) for k in categories]], dtype=np.float64)  # fmt: skip
        ref_n, win_n = int(table[0].sum()), int(table[1].sum())
        short = self._short("chi2", ref_n, win_n)
        if short is not None:
            return short
        statistic, p_value = 0.0, 1.0
        if len(categories) > 1:
            result = stats.chi2_contingency(table, correction=False)
            statistic, p_value = float(result.statistic), float(result.pvalue)
        return DetectorResult(
            self.feature, "chi2", statistic, p_value, self._verdict(p_value), ref_n, win_n,
            psi=psi_from_counts(table[0], table[1]),
        )  # fmt: skip


#: Permutations per matrix product of the MMD test (and the fewest a stopped test has done).
PERMUTATION_BATCH = 500


@dataclass
class MMDDetector(_Base):
    """Kernel two-sample test (MMD, RBF kernel, median heuristic, permutation p-value).

    At most ``max_samples`` rows of each side are used (a seeded subsample), bounding the
    kernel matrix; the smallest p-value it can give is ``1 / (permutations + 1)``.
    """

    permutations: int = 1000
    max_samples: int = 300
    seed: int = 0
    _reference: NDArray[np.float32] | None = None

    def fit(self, reference: NDArray[np.float32]) -> Self:
        self._reference = _rows(reference, self.max_samples, self.seed)
        return self

    def score(self, window: NDArray[np.float32]) -> DetectorResult:
        reference = _fitted(self._reference)
        rows = _rows(window, self.max_samples, self.seed + 1)
        short = self._short("mmd", len(reference), len(rows))
        if short is not None:
            return short
        if reference.shape[1] != rows.shape[1]:
            note = f"embedding width {rows.shape[1]} differs from the reference's"
            return DetectorResult(self.feature, "mmd", None, None, "skipped", len(reference),
                                  len(rows), note=note)  # fmt: skip
        statistic, p_value, done = mmd_permutation_test(
            reference, rows, self.permutations, self.seed, stop_above=self.alpha
        )
        note = f"{self.permutations} permutations"
        if done < self.permutations:
            note = f"{done} of {note} (stopped: p cannot reach alpha)"
        return DetectorResult(
            self.feature, "mmd", statistic, p_value, self._verdict(p_value), len(reference),
            len(rows), note=note,
        )  # fmt: skip


def mmd_test(
    x: NDArray[np.float32], y: NDArray[np.float32], permutations: int, seed: int = 0
) -> tuple[float, float]:
    """(squared MMD, permutation p-value) of samples ``x [n, D]`` and ``y [m, D]``."""
    statistic, p_value, _ = mmd_permutation_test(x, y, permutations, seed)
    return statistic, p_value


def mmd_permutation_test(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    permutations: int,
    seed: int = 0,
    stop_above: float | None = None,
) -> tuple[float, float, int]:
    """(squared MMD, permutation p-value, permutations done) of ``x [n, D]`` and ``y [m, D]``.

    Permutations run in batches of :data:`PERMUTATION_BATCH` (one matrix product each). With
    ``stop_above``, the test stops once the full test's p-value is sure to exceed it (the
    exceedances so far already give ``p > stop_above`` with every permutation counted): a
    verdict at any level up to ``stop_above`` is then the full test's, and the p-value is the
    estimate from the permutations done. Without drift most windows stop after one batch.
    """
    pooled = np.concatenate([x, y]).astype(np.float64)
    kernel = _rbf_kernel(pooled).astype(np.float32)
    n, total = len(x), len(pooled)
    rng = np.random.default_rng(seed)
    limit = None if stop_above is None else stop_above * (permutations + 1.0)
    observed, exceed, done = 0.0, 0, 0
    while True:
        size = min(PERMUTATION_BATCH, permutations - done)
        first = done == 0  # the first batch's row 0 is the observed split
        labels = np.zeros((size + first, total), dtype=np.float32)
        if first:
            labels[0, :n] = 1.0
        for row in labels[int(first) :]:
            row[rng.permutation(total)[:n]] = 1.0
        values = _mmd_for_labels(kernel, labels, n, total - n)
        if first:
            observed, values = float(values[0]), values[1:]
        exceed += int(np.sum(values >= observed - 1e-12))
        done += size
        if done >= permutations or (limit is not None and exceed + 1.0 > limit):
            return observed, (1.0 + exceed) / (done + 1.0), done


def _mmd_for_labels(
    kernel: NDArray[np.float32], labels: NDArray[np.float32], n: int, m: int
) -> NDArray[np.float64]:
    """Biased MMD^2 for every row of 0/1 ``labels`` (1 = first sample), one matrix product."""
    rowsum = kernel.sum(axis=1, dtype=np.float64)
    grand = float(rowsum.sum())
    quad = np.einsum("pi,ip->p", labels, kernel @ labels.T, dtype=np.float64)  # s'Ks
    cross = labels.astype(np.float64) @ rowsum  # s'K1
    xx = quad
    xy = cross - quad
    yy = grand - 2.0 * cross + quad
    result: NDArray[np.float64] = xx / n**2 + yy / m**2 - 2.0 * xy / (n * m)
    return result


def _rbf_kernel(pooled: NDArray[np.float64]) -> NDArray[np.float64]:
    squared = (pooled**2).sum(axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    upper = distances[np.triu_indices(len(pooled), k=1)]
    median = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    kernel: NDArray[np.float64] = np.exp(-distances / median)  # 2 sigma^2 = median d^2
    return kernel


def psi_edges(reference: NDArray[np.float64], bins: int = 10) -> NDArray[np.float64]:
    """The inner edges of ``bins`` reference-quantile bins (ties merged)."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def psi_continuous(
    reference: NDArray[np.float64],
    window: NDArray[np.float64],
    edges: NDArray[np.float64] | None = None,
) -> float:
    """Population stability index over the reference's quantile bins."""
    edges = psi_edges(reference) if edges is None else edges
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    win = np.bincount(np.searchsorted(edges, window, side="right"), minlength=len(edges) + 1)
    return psi_from_counts(ref, win)


def psi_from_counts(reference: NDArray[Any], window: NDArray[Any]) -> float:
    """PSI = sum (w - r) ln(w / r) over bins, shares floored at 1e-4 (empty bins)."""
    r = np.maximum(
        np.asarray(reference, np.float64) / max(float(np.sum(reference)), 1.0), _PSI_FLOOR
    )
    w = np.maximum(np.asarray(window, np.float64) / max(float(np.sum(window)), 1.0), _PSI_FLOOR)
    value = float(np.sum((w - r) * np.log(w / r)))
    return value if math.isfinite(value) else 0.0


def _finite(values: NDArray[np.float64]) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    finite: NDArray[np.float64] = array[np.isfinite(array)]
    return finite


def _rows(values: NDArray[np.float32], limit: int, seed: int) -> NDArray[np.float32]:
    rows = np.asarray(values, dtype=np.float32)
    rows = rows.reshape(len(rows), -1) if rows.size else np.zeros((0, 1), np.float32)
    if len(rows) > limit:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))]
    return rows


_T = TypeVar("_T")


def _fitted(reference: _T | None) -> _T:
    if reference is None:
        raise RuntimeError("call fit(reference) before score(window)")
    return reference
