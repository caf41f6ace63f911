"""Benchmark: drift detection power of ``visionyard.monitor.compare`` on two image sets.

For each set (the synthetic shapes and scikit-learn's real handwritten digits, see
``bench/drift_data.py``) a small CNN is trained here with ``visionyard.train.train``, its
reference profile is built from the validation split (``build_profile``), and live windows
are drawn from held-out images (never trained on, never in the reference) with each shift
applied: brightness -30 %, Gaussian blur (radius 1.5 px), Gaussian noise (sigma 15 of 255),
a class the model never saw (every window image from it), a 90/10 class-prior shift (90 %
of a window from one class), and no shift.

- ``flagged``: share of windows of 100 and 500 images whose overall verdict is ``drift``
  over the per-feature KS and chi-square detectors (default ``CompareOptions``: alpha 0.005
  after Benjamini-Hochberg); ``MMD alone``: share of the same windows that the kernel
  two-sample test on the embeddings flags on its own (1,000 permutations, p <= 0.005).
- ``first flag``: images stream one by one into a ``SlidingWindow`` already full of
  unshifted images; the shift starts with the stream and the window is compared every 25
  images; the number of shifted requests until the first ``drift`` verdict (median over the
  streams; ``>N``: not flagged within N requests).
- no shift: the false-alarm rate of the whole procedure the server runs (every feature and
  the MMD on embeddings, corrected together) over ``null_windows`` windows per size (target
  <= 1 %), twice: against this run's reference (the validation split's profile: ONE draw of
  a small sample, so its rate is conditional on how typical that draw happens to be), and
  with a fresh reference of the same size per window (drawn with the window, disjoint, from
  the validation and held-out images): the rate over references, i.e. over versions.

Windows are drawn without replacement from the held-out pool where it is large enough (a
random subset of independent images is itself an independent sample, so each window's
false-alarm chance is exact; overlapping windows only make the estimate noisier); marked
``resampled`` where the pool is smaller than the window (digits: 9's and one-class windows),
drawn with replacement. Also prints the time to profile 1,000 held-out shapes images.

    .venv/bin/python -m pip install -e '.[bench]' -c constraints.txt   # scikit-learn
    .venv/bin/python bench/bench_drift.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drift_data import Prepared, digits_sets, prepare, shapes_sets  # noqa: E402

from visionyard.monitor import (  # noqa: E402
    CompareOptions,
    FeatureSample,
    MMDDetector,
    Record,
    SlidingWindow,
    build_profile,
    compare,
)
from visionyard.runtime.session import InferenceSession  # noqa: E402

SIZES = (100, 500)
ALPHA = 0.005
MMD_PERMUTATIONS = 1000
STEP = 25
FALSE_ALARM_TARGET = 0.01
PRIOR = "prior 90/10"
NONE = "none"


@dataclass(frozen=True)
class Plan:
    windows: int
    null_windows: int
    streams: int
    epochs: int
    digits_epochs: int
    shapes_per_class: int


class Sampler:
    """Draws windows of one shift from a prepared set."""

    def __init__(self, data: Prepared, rng: np.random.Generator) -> None:
        self.data, self.rng = data, rng
        classes = np.array(data.nominal_classes)
        self.majority = np.flatnonzero(classes == classes[0])
        self.others = np.flatnonzero(classes != classes[0])

    def resampled(self, shift: str, n: int) -> bool:
        """Whether windows of ``n`` images of ``shift`` are drawn with replacement."""
        if shift == PRIOR:
            return len(self.majority) < n - n // 10 or len(self.others) < n // 10
        return len(self.pool(shift)) < n

    def pool(self, shift: str) -> list[Record]:
        if shift in (NONE, PRIOR):
            return self.data.nominal
        return self.data.shifted[shift]

    def draw(self, shift: str, n: int) -> list[Record]:
        if shift == PRIOR:
            major = n - n // 10
            picks = [*self._pick(self.majority, major), *self._pick(self.others, n - major)]
            return [self.data.nominal[int(i)] for i in self.rng.permutation(picks)]
        pool = self.pool(shift)
        return [pool[int(i)] for i in self._pick(np.arange(len(pool)), n)]

    def _pick(self, indices: np.ndarray, n: int) -> np.ndarray:
        return self.rng.choice(indices, n, replace=n > len(indices))


def features_only(records: list[Record]) -> FeatureSample:
    return dataclasses.replace(FeatureSample.of(records), embeddings=None)


def drifting(reference: FeatureSample, window: FeatureSample) -> bool:
    return compare(reference, window, CompareOptions()).verdict == "drift"


def mmd_flags(data: Prepared, records: list[Record]) -> bool:
    assert data.reference_embeddings is not None
    rows = np.stack([r.embedding for r in records if r.embedding is not None])
    detector = MMDDetector("embedding", 30, ALPHA, MMD_PERMUTATIONS).fit(data.reference_embeddings)
    return detector.score(rows).verdict == "drift"


def share_flagged(
    data: Prepared, sampler: Sampler, shift: str, size: int, count: int
) -> tuple[float, float]:
    """Shares of ``count`` windows flagged by KS + chi-square, and by MMD alone."""
    hits = mmd = 0
    for _ in range(count):
        records = sampler.draw(shift, size)
        hits += drifting(data.reference, features_only(records))
        mmd += mmd_flags(data, records)
    return hits / count, mmd / count


def null_rates(data: Prepared, sampler: Sampler, size: int, count: int) -> tuple[float, float]:
    """False-alarm rates of the full procedure (features + MMD): this run's reference, and a
    fresh reference of the same size per window, disjoint from it."""
    reference = dataclasses.replace(data.reference, embeddings=data.reference_embeddings)
    fixed = sum(
        drifting(reference, FeatureSample.of(sampler.draw(NONE, size))) for _ in range(count)
    )
    union = [*data.val_records, *data.nominal]
    k = min(data.reference.images, len(union) - size)
    fresh = 0
    for _ in range(count):
        order = sampler.rng.permutation(len(union))
        ref = FeatureSample.of([union[int(i)] for i in order[:k]])
        fresh += drifting(ref, FeatureSample.of([union[int(i)] for i in order[k : k + size]]))
    return fixed / count, fresh / count


def first_flag(data: Prepared, sampler: Sampler, shift: str, size: int, limit: int) -> int | None:
    window = SlidingWindow(max_images=size)
    window.extend(sampler.draw(NONE, size))
    stream = sampler.draw(shift, limit)
    for done in range(STEP, limit + 1, STEP):
        window.extend(stream[done - STEP : done])
        snapshot = dataclasses.replace(window.snapshot(), embeddings=None)
        if compare(data.reference, snapshot).verdict == "drift":
            return done
    return None


def flag_text(found: list[int | None], limit: int) -> str:
    hits = sorted(f for f in found if f is not None)
    if not hits:
        return f">{limit} (0/{len(found)})"
    median = int(np.median([f if f is not None else limit + STEP for f in found]))
    text = f"{median}" if median <= limit else f">{limit}"
    return f"{text} ({len(hits)}/{len(found)})"


def measure(data: Prepared, plan: Plan, table: Table) -> list[tuple[str, int, float]]:
    """Fill ``table``'s rows for one set; returns the false-alarm rates ``(set, size, rate)``."""
    sampler = Sampler(data, np.random.default_rng(1))
    alarms: list[tuple[str, int, float]] = []
    for size in SIZES:
        fixed, fresh = null_rates(data, sampler, size, plan.null_windows)
        alarms += [(f"{data.name}, this run's reference", size, fixed)]
        alarms += [(f"{data.name}, fresh references", size, fresh)]
        table.add_row(
            data.name, NONE, str(size), f"{fixed:.1%} / {fresh:.1%}", "", "",
            f"false alarms over {plan.null_windows} windows: this run's reference / fresh ones",
        )  # fmt: skip
    for shift in [*data.shifted, PRIOR]:
        for size in SIZES:
            share, mmd = share_flagged(data, sampler, shift, size, plan.windows)
            limit = size  # after `size` shifted requests the window holds only shifted images
            found = [first_flag(data, sampler, shift, size, limit) for _ in range(plan.streams)]
            note = "resampled" if sampler.resampled(shift, size) else ""
            table.add_row(
                data.name, shift, str(size), f"{share:.0%}", f"{mmd:.0%}",
                flag_text(found, limit), note,
            )  # fmt: skip
    return alarms


def profile_seconds(data: Prepared, images: int = 1000) -> tuple[int, float]:
    assert data.bundle is not None
    session = InferenceSession.open(data.bundle, intra_op_threads=1)
    paths = data.profile_paths[:images]
    started = time.perf_counter()
    profile = build_profile(session, paths)
    return profile.images, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows (under ~10 min)")
    args = parser.parse_args()
    plan = (
        Plan(
            windows=50, null_windows=200, streams=5, epochs=8, digits_epochs=4, shapes_per_class=200
        )
        if args.quick
        else Plan(
            windows=100,
            null_windows=500,
            streams=10,
            epochs=10,
            digits_epochs=6,
            shapes_per_class=250,
        )
    )
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    console, started = Console(width=120), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vy-bench-drift-") as tmp:
        work = Path(tmp)
        train_root, pool, unseen = shapes_sets(work, plan.shapes_per_class, pool_per_class=700)
        sets = [prepare("shapes", train_root, pool, unseen, 64, plan.epochs)]
        print(f"shapes ready ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        sets.append(prepare("digits", *digits_sets(work), 32, plan.digits_epochs))
        print(f"digits ready ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        about = Table(title="models (small_cnn, trained here)")
        for column in ("set", "val accuracy", "train s", "reference images", "held-out images"):
            about.add_column(column)
        for data in sets:
            about.add_row(
                data.name, f"{data.accuracy:.3f}", f"{data.train_seconds:.0f}",
                str(data.reference.images), str(len(data.nominal)),
            )  # fmt: skip
        console.print(about)
        table = Table(title="drift detection power (compare, default options)")
        columns = (
            "set",
            "shift",
            "window",
            "flagged",
            "MMD alone",
            "first flag (requests)",
            "note",
        )
        for column in columns:
            table.add_column(column)
        alarms = [row for data in sets for row in measure(data, plan, table)]
        console.print(table)
        images, seconds = profile_seconds(sets[0])
    for kind in ("this run's reference", "fresh references"):
        rows = [(name, size, rate) for name, size, rate in alarms if name.endswith(kind)]
        worst = max(rows, key=lambda row: row[2])
        verdict = "PASS" if worst[2] <= FALSE_ALARM_TARGET else "FAIL"
        console.print(
            f"false-alarm rate with {kind}, worst of {len(rows)}: {worst[2]:.1%} "
            f"({worst[0].split(',')[0]}, window {worst[1]}; target <= 1 %): {verdict}"
        )
    console.print(
        f"build_profile of {images} held-out 64x64 PNG shapes images: {seconds:.2f} s "
        f"(target < 10 s; 640x480 JPEGs: bench/bench_monitor.py)"
    )
    console.print(f"whole benchmark: {time.perf_counter() - started:.0f} s")
    console.print(
        "command: .venv/bin/python bench/bench_drift.py" + (" --quick" if args.quick else "")
    )


if __name__ == "__main__":
    main()
