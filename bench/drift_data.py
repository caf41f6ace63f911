"""Data for bench/bench_drift.py: two image sets, a classifier trained on each, and the
per-image monitoring records of held-out images under each shift.

- ``shapes``: the synthetic shapes set (:func:`visionyard.data.make_classification_set`, 64x64);
  the model is trained on circle, square and triangle; ``star`` is the class it never saw.
- ``digits``: scikit-learn's ``load_digits`` (1,797 real 8x8 handwritten digit scans, 0..16),
  written as 32x32 grey PNGs (bicubic upscale); digit 9 is the class the model never saw.

Records are computed exactly as the server computes them: each image is encoded as PNG (what a
client sends), its header read with ``source_info``, decoded with ``decode_for_contract``,
``image_features`` taken, then ``session.preprocess`` / ``run`` / ``decode`` and
``prediction_records``.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from visionyard.contract.preprocess import decode_for_contract
from visionyard.monitor import (
    FeatureSample,
    Record,
    build_profile,
    image_features,
    image_files,
    prediction_records,
    source_info,
)
from visionyard.runtime.session import InferenceSession

Shift = Callable[[Image.Image, np.random.Generator], Image.Image]
BLUR_RADIUS = 1.5
NOISE_SIGMA = 15.0
BRIGHTNESS = 0.7


def brightness(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(BRIGHTNESS)


def blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))


def noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, NOISE_SIGMA, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), image.mode)


SHIFTS: dict[str, Shift] = {"brightness -30%": brightness, "blur": blur, "noise": noise}


@dataclass
class Prepared:
    """One data set: the model, its reference sample, and records of held-out images."""

    name: str
    accuracy: float
    train_seconds: float
    reference: FeatureSample
    nominal: list[Record]
    nominal_classes: list[str]
    shifted: dict[str, list[Record]] = field(default_factory=dict)
    profile_paths: list[Path] = field(default_factory=list)
    bundle: Path | None = None
    reference_embeddings: np.ndarray | None = None
    val_records: list[Record] = field(default_factory=list)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def records(session: InferenceSession, encoded: Sequence[bytes], batch: int = 64) -> list[Record]:
    """Monitoring records of encoded images, as the server computes them (with the embedding
    row when the model has one)."""
    out: list[Record] = []
    for start in range(0, len(encoded), batch):
        chunk = encoded[start : start + batch]
        images = [decode_for_contract(data, session.contract) for data in chunk]
        firsts = [image_features(im, source_info(d)) for im, d in zip(images, chunk, strict=True)]
        pre = session.preprocess(images)
        outputs = session.run(pre.tensor)
        results = session.decode(outputs, pre.metas)
        preds = prediction_records(outputs, results, session.contract, pre.metas)
        out += [a.merge(b) for a, b in zip(firsts, preds, strict=True)]
    return out


def train_bundle(data: Path, home: Path, input_size: int, epochs: int) -> tuple[Path, float]:
    """A small CNN trained with ``visionyard.train.train``; returns the bundle and val accuracy."""
    from visionyard.settings import Settings
    from visionyard.train import make_config, train

    settings = Settings(home=home, train={"num_threads": 2, "seed": 0})
    config = make_config(
        data=data, arch="small_cnn", epochs=epochs, input_size=(input_size, input_size)
    )
    result = train(config, settings)
    return result.bundle_path, float(result.best_metrics["val_accuracy"])


def load_folder(root: Path) -> dict[str, list[Image.Image]]:
    """Images of an ImageFolder split, by class, loaded into memory."""
    out: dict[str, list[Image.Image]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        out[folder.name] = [_load(p) for p in sorted(folder.glob("*.png"))]
    return out


def _load(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image.copy()


def shapes_sets(work: Path, per_class: int, pool_per_class: int) -> tuple[Path, Path, str]:
    """``(training root, held-out pool root, unseen class)``; the unseen class is moved out
    of the training root."""
    from visionyard.data import make_classification_set

    train_root = make_classification_set(
        work / "shapes", seed=0, train_per_class=per_class, val_per_class=per_class // 3
    )
    for split in ("train", "val"):
        shutil.rmtree(train_root / split / "star")
    pool = make_classification_set(
        work / "shapes-pool", seed=1, train_per_class=pool_per_class, val_per_class=1
    )
    return train_root, pool / "train", "star"


def digits_sets(work: Path, unseen: int = 9, seed: int = 0) -> tuple[Path, Path, str]:
    """scikit-learn's digits as 32x32 grey PNGs: train 40 %, val 20 %, held-out pool 40 % of
    the seen digits; every image of the ``unseen`` digit goes to the pool."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    seen = [int(i) for i in order if int(digits.target[i]) != unseen]
    cut_train, cut_val = int(0.4 * len(seen)), int(0.6 * len(seen))
    plan = {
        "train": seen[:cut_train], "val": seen[cut_train:cut_val],
        "pool": seen[cut_val:] + [int(i) for i in order if int(digits.target[i]) == unseen],
    }  # fmt: skip
    for split, indices in plan.items():
        for index in indices:
            target = work / "digits" / split / f"digit{digits.target[index]}"
            target.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[index] * (255.0 / 16.0)).round().astype(np.uint8)
            image = Image.fromarray(pixels, "L").resize((32, 32), Image.Resampling.BICUBIC)
            image.save(target / f"{index:05d}.png")
    pool = work / "digits" / "pool"
    shutil.move(str(pool), str(work / "digits-pool"))
    return work / "digits", work / "digits-pool", f"digit{unseen}"


def prepare(
    name: str, train_root: Path, pool_root: Path, unseen: str, input_size: int, epochs: int
) -> Prepared:
    """Train, profile the validation split, compute records of the pool under each shift."""
    import time

    started = time.perf_counter()
    bundle, accuracy = train_bundle(
        train_root, train_root.parent / f".home-{name}", input_size, epochs
    )
    seconds = time.perf_counter() - started
    session = InferenceSession.open(bundle, intra_op_threads=1)
    val = image_files(train_root, "val")
    full = build_profile(session, val, root=train_root / "val").sample
    reference = dataclasses.replace(full, embeddings=None)  # MMD is measured on its own
    pool = load_folder(pool_root)
    classes = [c for c in sorted(pool) if c != unseen]
    rng = np.random.default_rng(0)
    images = [im for c in classes for im in pool[c]]
    nominal = records(session, [png(im) for im in images])
    prepared = Prepared(
        name, accuracy, seconds, reference, nominal,
        [c for c in classes for _ in pool[c]], bundle=bundle,
        reference_embeddings=full.embeddings,
        val_records=records(session, [png(_load(path)) for path in val]),
    )  # fmt: skip
    for shift, apply in SHIFTS.items():
        prepared.shifted[shift] = records(session, [png(apply(im, rng)) for im in images])
    prepared.shifted["unseen class"] = records(session, [png(im) for im in pool[unseen]])
    prepared.profile_paths = image_files(pool_root)
    return prepared
