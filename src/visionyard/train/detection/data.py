"""Detection training data: a COCO dataset decoded once, split by image, augmented with its boxes.

Images are decoded once by the contract's rules in the pass that builds the manifest (as for
classification, :mod:`visionyard.train.data`). A training batch flips, shifts and scales each
decoded image with its boxes (no rotation: a rotated box is no longer tight), jitters its
colours, then runs the contract's own preprocessing (the letterbox), whose
:class:`~visionyard.contract.preprocess.ImageMeta` maps the boxes into input pixels. Validation
images get the preprocessing alone; their metas map predictions back, as in serving, and their
ground truth is evaluation's own (:func:`~visionyard.evaluate.detection.truth_from_coco`: crowd
regions ignored), so the validation mAP is the one ``visionyard evaluate`` reports.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from visionyard.contract.preprocess import ImageMeta, decode_for_contract, preprocess_image
from visionyard.contract.schema import VisionContract
from visionyard.data.coco import CocoDataset, CocoImage
from visionyard.data.manifest import DatasetManifest, build_manifest_and_decode
from visionyard.errors import DatasetError
from visionyard.evaluate.detection import ImageTruth, truth_from_coco
from visionyard.train.config import Augmentation
from visionyard.train.data import _border_colour, _jitter

Tensor = NDArray[np.float32]
Boxes = NDArray[np.float64]
MIN_SIDE = 2.0  # pixels: a box cut smaller than this by a shift is dropped


@dataclass(frozen=True)
class BoxSet:
    """Decoded images with their xyxy boxes (original pixels) and class indices, and their
    ground truth as evaluation reads it (crowd regions marked, areas kept)."""

    images: list[Image.Image]
    boxes: list[Boxes]
    labels: list[NDArray[np.int64]]
    coco: list[CocoImage]
    ground_truth: list[ImageTruth]

    def __len__(self) -> int:
        return len(self.images)

    def truth(self) -> list[ImageTruth]:
        """Ground truth for :func:`~visionyard.evaluate.detection.detection_report`."""
        return list(self.ground_truth)


@dataclass(frozen=True)
class Batch:
    tensor: Tensor
    metas: list[ImageMeta]
    boxes: list[Boxes]  # xyxy input pixels
    labels: list[NDArray[np.int64]]


def split_images(
    dataset: CocoDataset, val_fraction: float, seed: int
) -> tuple[list[CocoImage], list[CocoImage]]:
    """A seeded hold-out of ``val_fraction`` of the images (at least one each side)."""
    count = len(dataset.images)
    if count < 2:
        raise DatasetError(f"{dataset.annotation_file}: a detector needs at least 2 images")
    order = np.random.default_rng([seed, 7]).permutation(count)
    held = min(max(1, round(count * val_fraction)), count - 1)
    val = sorted(int(i) for i in order[:held])
    train = sorted(int(i) for i in order[held:])
    return [dataset.images[i] for i in train], [dataset.images[i] for i in val]


def check_objects(dataset: CocoDataset, val: Sequence[CocoImage]) -> None:
    """Refuse, before any run starts, data whose validation mAP could not be computed."""
    if not dataset.annotations:
        raise DatasetError("the dataset has no annotations")
    if all(a.iscrowd for a in dataset.annotations):
        raise DatasetError("the dataset has only crowd regions (iscrowd), no objects to detect")
    if not any(not a.iscrowd for i in val for a in dataset.annotations_for(i.id)):
        count = f"{len(val)} image{'s' if len(val) != 1 else ''}"
        raise DatasetError(
            f"the validation split ({count}) holds no objects: annotate more images or "
            "change --val-fraction"
        )


def read_box_data(
    dataset: CocoDataset,
    train: Sequence[CocoImage],
    val: Sequence[CocoImage],
    contract: VisionContract,
    max_pixels: int,
) -> tuple[DatasetManifest, BoxSet, BoxSet]:
    """The dataset's manifest and the decoded train and val sets (each image decoded once)."""
    manifest, images = build_manifest_and_decode(
        dataset, lambda data: decode_for_contract(data, contract, max_pixels), max_pixels=max_pixels
    )
    return manifest, _box_set(dataset, train, images), _box_set(dataset, val, images)


def _box_set(
    dataset: CocoDataset, chosen: Sequence[CocoImage], images: dict[str, Image.Image]
) -> BoxSet:
    boxes, labels = [], []
    for image in chosen:
        found = dataset.annotations_for(image.id)
        xywh = np.array([a.bbox for a in found], np.float64).reshape(-1, 4)
        boxes.append(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
        labels.append(np.array([a.label for a in found], np.int64))
    truth = truth_from_coco(dataset, dataset.labels, chosen)
    return BoxSet([images[i.file_name] for i in chosen], boxes, labels, list(chosen), truth)


def preprocess(
    images: Sequence[Image.Image],
    boxes: Sequence[Boxes],
    labels: Sequence[NDArray[np.int64]],
    contract: VisionContract,
) -> Batch:
    """The contract's preprocessing, with each image's boxes mapped into input pixels."""
    size = contract.preprocessing.input_size
    if not images:
        empty = np.zeros((0, 3, size.height, size.width), np.float32)
        return Batch(empty, [], [], [])
    tensors, metas = zip(*(preprocess_image(image, contract) for image in images), strict=True)
    mapped = [meta.to_input(b) for meta, b in zip(metas, boxes, strict=True)]
    stacked = np.stack(tensors).astype(np.float32, copy=False)
    return Batch(stacked, list(metas), mapped, list(labels))


def train_batches(
    data: BoxSet,
    contract: VisionContract,
    augment: Augmentation,
    batch_size: int,
    rng: np.random.Generator,
) -> Iterator[Batch]:
    """One epoch of shuffled, augmented, preprocessed batches (``rng`` decides everything)."""
    order = rng.permutation(len(data))
    for start in range(0, len(order), batch_size):
        chosen = [int(i) for i in order[start : start + batch_size]]
        pictures, boxes, labels = [], [], []
        for i in chosen:
            image, kept, label = augment_boxes(data.images[i], data.boxes[i], data.labels[i],
                                               augment, rng)  # fmt: skip
            pictures.append(image)
            boxes.append(kept)
            labels.append(label)
        yield preprocess(pictures, boxes, labels, contract)


def augment_boxes(
    image: Image.Image,
    boxes: Boxes,
    labels: NDArray[np.int64],
    augment: Augmentation,
    rng: np.random.Generator,
) -> tuple[Image.Image, Boxes, NDArray[np.int64]]:
    """Flips, a shift and scale about the centre (boxes follow; cut boxes are clipped, tiny
    ones dropped), then colour jitter."""
    if not augment.enabled:
        return image, boxes, labels
    w, h = image.size
    boxes = boxes.copy()
    if augment.hflip and rng.random() < 0.5:
        image = ImageOps.mirror(image)
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    if augment.vflip and rng.random() < 0.5:
        image = ImageOps.flip(image)
        boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
    scale = float(rng.uniform(*augment.scale))
    tx, ty = (float(v) for v in rng.uniform(-augment.translate, augment.translate, 2) * (w, h))
    if (scale, tx, ty) != (1.0, 0.0, 0.0):
        cx, cy = w / 2, h / 2
        inverse = (1 / scale, 0.0, cx - (cx + tx) / scale, 0.0, 1 / scale, cy - (cy + ty) / scale)
        image = image.transform(image.size, Image.Transform.AFFINE, inverse,
                                resample=Image.Resampling.BILINEAR,
                                fillcolor=_border_colour(image))  # fmt: skip
        centre = np.array([cx, cy, cx, cy])
        moved = (boxes - centre) * scale + centre + np.array([tx, ty, tx, ty])
        boxes = np.clip(moved, 0, [w, h, w, h])
        keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_SIDE)
        boxes, labels = boxes[keep], labels[keep]
    return _jitter(image, augment, rng), boxes, labels
