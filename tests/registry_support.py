"""Helpers for the registry tests: runs holding tiny colour-classifier bundles, colour datasets
and gate files. No training: the models are :mod:`tests.fixtures.runtime`'s nearest-colour rule,
so every accuracy and per-class recall below is known exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.runtime import (
    COLOURS,
    colour_classifier_onnx,
    colour_contract,
    detector_contract,
    fixed_detector_onnx,
    flat_png,
)
from visionyard.bundle.store import write_bundle
from visionyard.data.manifest import build_manifest
from visionyard.settings import Settings
from visionyard.tracking import start_run

LABELS = tuple(COLOURS)
#: The colour classifier with "red" moved onto green: red images are then predicted green.
RED_AS_GREEN = tuple((0, 255, 0) if name == "red" else rgb for name, rgb in COLOURS.items())


def colour_dataset(root: Path, per_class: int = 2, labels: Sequence[str] = LABELS) -> Path:
    """An ImageFolder tree ``val/<colour>/<i>.png`` of flat images of each colour."""
    for name in labels:
        folder = root / "val" / name
        folder.mkdir(parents=True, exist_ok=True)
        rgb = COLOURS.get(name, (128, 128, 128))
        for i in range(per_class):
            (folder / f"{i}.png").write_bytes(flat_png(rgb, (16 + i, 12)))
    return root


def write_gate(path: Path, dataset: Path, **policy: Any) -> Path:
    """A gate YAML file for ``dataset`` (relative to the file) with ``policy`` settings."""
    body = {"dataset": str(dataset), **policy}
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def log_colour_run(
    settings: Settings,
    tmp: Path,
    *,
    colours: Sequence[tuple[int, int, int]] | None = None,
    sharpness: float = 10.0,
    labels: Sequence[str] = LABELS,
    dataset: Path | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> str:
    """A finished run holding a colour-classifier bundle; returns its id."""
    model = colour_classifier_onnx(colours or tuple(COLOURS.values()), sharpness=sharpness)
    bundle_dir = tmp / f"bundle-{len(list(tmp.glob('bundle-*')))}"
    bundle = write_bundle(bundle_dir, model=model, contract=colour_contract(labels))
    return _log(settings, bundle.path, dataset, params, metrics)


def log_detector_run(settings: Settings, tmp: Path) -> str:
    """A finished run holding the fixed-detector bundle (task: detection)."""
    bundle = write_bundle(
        tmp / "detector-bundle", model=fixed_detector_onnx(), contract=detector_contract()
    )
    return _log(settings, bundle.path, None, None, None)


def _log(
    settings: Settings,
    bundle_dir: Path,
    dataset: Path | None,
    params: Mapping[str, Any] | None,
    metrics: Mapping[str, float] | None,
) -> str:
    with start_run(settings=settings) as run:
        if params:
            run.log_params(params)
        if metrics:
            run.log_metrics(0, metrics)
        if dataset is not None:
            run.log_dataset(build_manifest(dataset), name="train")
        run.log_bundle(bundle_dir)
        return run.run_id
