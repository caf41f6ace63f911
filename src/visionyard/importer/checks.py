"""Sanity checks of an imported model's contract, and the images they run on.

- **Labels vs outputs**: the number of labels must equal the classes the model scores (the last
  axis of its classification / scores output, read from the graph or from one run on a dummy
  input). A mismatch is an error, not a warning: the runtime refuses such a version on every
  load (:func:`visionyard.runtime.signature.check_signature`), so registering it would only
  move the failure to the server. A model with no labels anywhere gets ``class_0..class_{C-1}``
  and a warning.
- **Reference images** (``--reference DIR``, images like those the model was trained on): they
  are preprocessed with the contract and the tensor's per-channel statistics are compared with
  what the contract implies the model saw. A contract that standardises (mean/std not 0/1 after
  scaling) implies inputs of mean ~0 and std ~1 per channel: a channel mean beyond +-2 or a std
  outside 0.2..5 is a warning. Any float contract implies inputs of order 1: when the 99th
  percentile of ``|value|`` exceeds 10 (e.g. 0..255 pixels fed to a model trained on 0..1), that
  is a warning too. uint8 contracts take raw pixels and are not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from visionyard.contract.preprocess import preprocess_batch
from visionyard.contract.schema import VisionContract
from visionyard.data.imagefolder import IMAGE_EXTENSIONS
from visionyard.errors import ConfigError, ContractError

MAX_IMAGES = 64
MAX_ABS_P99 = 10.0
MEAN_BOUND = 2.0
STD_RANGE = (0.2, 5.0)


@dataclass(frozen=True)
class ReferenceStats:
    """Per-channel statistics of the preprocessed reference images, and the warnings."""

    n_images: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    abs_p99: float
    warnings: tuple[str, ...]

    def metrics(self) -> dict[str, float]:
        values = {"reference_abs_p99": self.abs_p99, "reference_images": float(self.n_images)}
        for i, (m, s) in enumerate(zip(self.mean, self.std, strict=True)):
            values[f"reference_mean_c{i}"] = m
            values[f"reference_std_c{i}"] = s
        return values


def check_label_count(contract: VisionContract, classes: int, source: str, output: str) -> None:
    if classes != len(contract.labels):
        raise ContractError(
            "labels",
            f"{len(contract.labels)} labels ({source}) but the model's output {output!r} scores "
            f"{classes} classes; give a labels file with {classes} names",
        )


def list_images(folder: Path, what: str, most: int = MAX_IMAGES) -> list[Path]:
    """Up to ``most`` images under ``folder`` (recursively, sorted)."""
    if not folder.is_dir():
        raise ConfigError(f"{what} folder {folder} does not exist")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not found:
        raise ConfigError(f"{what} folder {folder} holds no images")
    return found[:most]


def generated_images(count: int = 8, seed: int = 0) -> list[Image.Image]:
    """Deterministic smooth colour fields with noise, of varied sizes (parity without a folder)."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        h, w = int(rng.integers(160, 400)), int(rng.integers(160, 400))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = rng.uniform(0, 255, 3) + rng.uniform(-0.6, 0.6, 3) * (x[..., None] + y[..., None])
        pixels = np.clip(base + rng.normal(0, 12 + 4 * index, (h, w, 3)), 0, 255)
        images.append(Image.fromarray(pixels.astype(np.uint8), "RGB"))
    return images


def reference_stats(contract: VisionContract, images: Sequence[Path]) -> ReferenceStats:
    """Preprocess ``images`` with the contract; compare their statistics with its implication."""
    tensor = preprocess_batch(list(images), contract).tensor.astype(np.float32)
    axes = (0, 2, 3) if contract.preprocessing.layout == "NCHW" else (0, 1, 2)
    mean = tuple(float(v) for v in tensor.mean(axis=axes))
    std = tuple(float(v) for v in tensor.std(axis=axes))
    p99 = float(np.percentile(np.abs(tensor), 99))
    warnings = _range_warnings(contract, mean, std, p99)
    return ReferenceStats(len(images), mean, std, p99, tuple(warnings))


def standardises(contract: VisionContract) -> bool:
    pre = contract.preprocessing
    return pre.dtype != "uint8" and (pre.mean != (0, 0, 0) or pre.std != (1, 1, 1))


def _range_warnings(
    contract: VisionContract, mean: tuple[float, ...], std: tuple[float, ...], p99: float
) -> list[str]:
    if contract.preprocessing.dtype == "uint8":
        return []
    found = []
    if p99 > MAX_ABS_P99:
        found.append(
            f"preprocessed reference pixels reach {p99:.3g} (99th percentile of |value|); float "
            "models are trained on values of order 1: check preprocessing.scale (1/255?)"
        )
    if standardises(contract):
        off = [i for i, m in enumerate(mean) if abs(m) > MEAN_BOUND]
        spread = [i for i, s in enumerate(std) if not STD_RANGE[0] <= s <= STD_RANGE[1]]
        if off or spread:
            found.append(
                "the contract standardises (mean/std) but the reference images come out with "
                f"channel means {_fmt(mean)} and stds {_fmt(std)}, far from 0 and 1: check "
                "mean, std, scale and color_order"
            )
    return found


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"
