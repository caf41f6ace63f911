"""Monitoring: what a version saw (its reference profile) against what it sees now.

The public API, in the order data flows::

    from visionyard import monitor

    # 1. per-image statistics, from work the caller already did (decode, run, decode outputs)
    info = monitor.source_info(jpeg_bytes)                  # header only: encoding, grey, ...
    record = monitor.image_features(rgb_image, info)        # size, brightness, contrast, ...
    preds = monitor.prediction_records(outputs, results, contract, metas)  # one per image
    record = record.merge(preds[0])                         # a Record: one image's statistics

    # 2. a reference profile of a version's validation images (stored beside the version)
    profile = monitor.build_profile(session, paths, root=folder)
    digest = monitor.save_profile(profile, folder)          # profile.json + profile.npz
    profile = monitor.load_profile(folder, digest)          # refuses tampered / truncated files

    # 3. live windows, by count and by age, fed one record per request image
    window = monitor.SlidingWindow(max_images=500, max_age_s=600)
    window.add(record)

    # 4. drift: one detector per feature, corrected for testing many at once
    result = monitor.compare(profile.sample, window.snapshot())
    result.verdict        # "drift" | "ok" | "not enough data"
    result.results        # DetectorResult per feature: statistic, p_value, p_adjusted, psi, ...

Names:

- :class:`SourceInfo`, :func:`source_info`: what decoding forgets (encoding, grey, alpha, EXIF).
- :class:`Record`: one image's statistics; :func:`image_features`,
  :func:`prediction_records`: compute them (:mod:`~visionyard.monitor.features` states the cost).
- :class:`FeatureSample`: values per continuous feature, counts per categorical feature,
  embedding rows; what a profile holds and a window's snapshot returns. :class:`SampleBuilder`
  builds one with reservoir caps.
- :class:`SlidingWindow`: thread-safe window by count and/or age, O(1) per added record.
- :class:`KSDetector`, :class:`ChiSquareDetector`, :class:`MMDDetector`: ``fit(reference)`` then
  ``score(window)`` -> :class:`DetectorResult`; :func:`compare` runs them all ->
  :class:`Comparison` (options: :class:`CompareOptions`).
- :class:`Profile`, :func:`build_profile`, :func:`collect_sample`, :func:`save_profile`,
  :func:`load_profile`, :func:`image_files`: reference profiles (onnxruntime is imported by the
  caller who opens the session).
- :mod:`visionyard.monitor.store` (imports mlflow; not re-exported): profiles on registered
  versions (``vy.profile_digest``), used by ``visionyard monitor profile | show | compare``.

Embeddings come from the contract's ``embedding_output``; a model without one has its
embedding detector ``"skipped"``, and the result says so.
"""

from visionyard.monitor.compare import CompareOptions, Comparison, compare
from visionyard.monitor.detectors import (
    ChiSquareDetector,
    Detector,
    DetectorResult,
    KSDetector,
    MMDDetector,
    Verdict,
)
from visionyard.monitor.features import (
    Record,
    SourceInfo,
    image_features,
    prediction_records,
    source_info,
)
from visionyard.monitor.profile import (
    Profile,
    ProfileOptions,
    build_profile,
    collect_sample,
    image_files,
    load_profile,
    save_profile,
)
from visionyard.monitor.sample import FeatureSample, SampleBuilder
from visionyard.monitor.window import SlidingWindow

__all__ = [
    "ChiSquareDetector",
    "CompareOptions",
    "Comparison",
    "Detector",
    "DetectorResult",
    "FeatureSample",
    "KSDetector",
    "MMDDetector",
    "Profile",
    "ProfileOptions",
    "Record",
    "SampleBuilder",
    "SlidingWindow",
    "SourceInfo",
    "Verdict",
    "build_profile",
    "collect_sample",
    "compare",
    "image_features",
    "image_files",
    "load_profile",
    "prediction_records",
    "save_profile",
    "source_info",
]
