"""Training data: decode once into memory, augment on the fly, then the contract's preprocessing.

Every image is decoded ONCE with the contract's decoding rules (sets for this trainer are
small), in the same pass that hashes and verifies it for the dataset manifest
(:func:`read_training_data`). Training batches apply a seeded augmentation to the decoded
Pillow image and then call :func:`visionyard.contract.preprocess.preprocess_image`; evaluation
batches call the same function without augmentation. Training and serving therefore share one
transform.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance, ImageOps

from visionyard.contract.preprocess import decode_for_contract, preprocess_image
from visionyard.contract.schema import VisionContract
from visionyard.data.imagefolder import ImageFolderDataset, ImageSample
from visionyard.data.manifest import DatasetManifest, build_manifest_and_decode
from visionyard.errors import DatasetError
from visionyard.train.config import Augmentation

Tensor = NDArray[np.float32]
Labels = NDArray[np.int64]


@dataclass(frozen=True)
class ImageSet:
    """Decoded RGB images with their class indices and source paths (relative to the root)."""

    images: list[Image.Image]
    labels: Labels
    sources: list[str]

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Split:
    """The samples used for training and validation, and how the validation set was chosen."""

    train: tuple[ImageSample, ...]
    val: tuple[ImageSample, ...]
    how: str


def split_dataset(dataset: ImageFolderDataset, val_fraction: float, seed: int) -> Split:
    """Use the dataset's train/val split; without one, hold out a stratified ``val_fraction``."""
    if "val" in dataset.splits:
        train_split = "train" if "train" in dataset.splits else None
        train = tuple(s for s in dataset.samples if s.split == train_split)
        val = tuple(s for s in dataset.samples if s.split == "val")
        if not train:
            raise DatasetError(f"dataset {dataset.root} has a val split but no train split")
        return Split(train, val, "dataset")
    pool = [s for s in dataset.samples if s.split in ("train", None)]
    return _stratified(pool, val_fraction, seed)


def _stratified(pool: Sequence[ImageSample], fraction: float, seed: int) -> Split:
    rng = np.random.default_rng([seed, 7])
    train: list[ImageSample] = []
    val: list[ImageSample] = []
    for label in sorted({s.label for s in pool}):
        members = [s for s in pool if s.label == label]
        order = rng.permutation(len(members))
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    if not val:
        raise DatasetError("too few images to hold out a validation set")
    by_path = attrgetter("relpath")
    return Split(
        tuple(sorted(train, key=by_path)), tuple(sorted(val, key=by_path)), f"random {fraction}"
    )


def load_images(
    samples: Sequence[ImageSample], contract: VisionContract, max_pixels: int
) -> ImageSet:
    """Decode every sample once, by the contract's decoding rules."""
    images = [decode_for_contract(s.path, contract, max_pixels) for s in samples]
    labels = np.array([s.label for s in samples], dtype=np.int64)
    return ImageSet(images, labels, [s.relpath for s in samples])


def read_training_data(
    dataset: ImageFolderDataset, split: Split, contract: VisionContract, max_pixels: int
) -> tuple[DatasetManifest, ImageSet, ImageSet]:
    """The dataset's manifest and the decoded train and val images, each image read and decoded
    once (by the contract's rules) for both."""
    wanted = {s.relpath for s in (*split.train, *split.val)}
    manifest, images = build_manifest_and_decode(
        dataset,
        lambda data: decode_for_contract(data, contract, max_pixels),
        keep=wanted,
        max_pixels=max_pixels,
    )
    return manifest, _image_set(split.train, images), _image_set(split.val, images)


def _image_set(samples: Sequence[ImageSample], images: dict[str, Image.Image]) -> ImageSet:
    labels = np.array([s.label for s in samples], dtype=np.int64)
    return ImageSet([images[s.relpath] for s in samples], labels, [s.relpath for s in samples])


def eval_tensor(images: Sequence[Image.Image], contract: VisionContract) -> Tensor:
    """The evaluation transform: exactly the contract's preprocessing, stacked."""
    if not images:
        size = contract.preprocessing.input_size
        return np.zeros((0, 3, size.height, size.width), dtype=np.float32)
    return np.stack([preprocess_image(image, contract)[0] for image in images]).astype(
        np.float32, copy=False
    )


def train_batches(
    data: ImageSet,
    contract: VisionContract,
    augment: Augmentation,
    batch_size: int,
    rng: np.random.Generator,
) -> Iterator[tuple[Tensor, Labels]]:
    """One epoch of shuffled, augmented, preprocessed batches (``rng`` decides everything)."""
    order = rng.permutation(len(data))
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        pictures = [augment_image(data.images[i], augment, rng) for i in chosen]
        yield eval_tensor(pictures, contract), data.labels[chosen]


def augment_image(
    image: Image.Image, augment: Augmentation, rng: np.random.Generator
) -> Image.Image:
    """Random flips, a small affine (rotation, scale, translation) and colour jitter."""
    if not augment.enabled:
        return image
    if augment.hflip and rng.random() < 0.5:
        image = ImageOps.mirror(image)
    if augment.vflip and rng.random() < 0.5:
        image = ImageOps.flip(image)
    image = _affine(image, augment, rng)
    return _jitter(image, augment, rng)


def _affine(image: Image.Image, augment: Augmentation, rng: np.random.Generator) -> Image.Image:
    angle = math.radians(rng.uniform(-augment.rotate_degrees, augment.rotate_degrees))
    scale = rng.uniform(*augment.scale)
    w, h = image.size
    tx, ty = rng.uniform(-augment.translate, augment.translate, size=2) * (w, h)
    if angle == 0 and scale == 1 and tx == 0 and ty == 0:
        return image
    # Pillow wants the inverse map (output pixel -> input pixel) about the image centre.
    cx, cy = w / 2, h / 2
    a, b = math.cos(angle) / scale, math.sin(angle) / scale
    d, e = -b, a
    c = cx - (a * (cx + tx) + b * (cy + ty))
    f = cy - (d * (cx + tx) + e * (cy + ty))
    return image.transform(
        image.size,
        Image.Transform.AFFINE,
        (a, b, c, d, e, f),
        resample=Image.Resampling.BILINEAR,
        fillcolor=_border_colour(image),
    )


def _border_colour(image: Image.Image) -> tuple[int, int, int]:
    """The mean colour of the outermost pixels: a neutral fill for uncovered corners."""
    pixels = np.asarray(image, dtype=np.float32)
    ring = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    r, g, b = (int(v) for v in ring.mean(axis=0).round())
    return (r, g, b)


def _jitter(image: Image.Image, augment: Augmentation, rng: np.random.Generator) -> Image.Image:
    for enhancer, amount in (
        (ImageEnhance.Brightness, augment.brightness),
        (ImageEnhance.Contrast, augment.contrast),
        (ImageEnhance.Color, augment.saturation),
    ):
        if amount > 0:
            image = enhancer(image).enhance(float(rng.uniform(1 - amount, 1 + amount)))
    return image
