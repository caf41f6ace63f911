"""Per-image statistics, cheap enough to compute on every request: ONE implementation, used by
reference profiles (:mod:`visionyard.monitor.profile`) and by the server's live windows.

Image statistics come from an image the caller has ALREADY decoded (the server and the profile
builder decode every image once, with :func:`visionyard.contract.decode_for_contract`) plus a
:class:`SourceInfo` read from the encoded bytes' header (:func:`source_info`: format, colour
mode, EXIF orientation; ~0.1 ms, no pixel is decoded), because decoding to RGB forgets whether
the image was grey, had alpha or was rotated.

- ``width``, ``height``, ``aspect`` (width / height) of the decoded (oriented) image;
- ``brightness_r|g|b``: mean of each channel, 0..255; ``contrast``: std of the luminance
  (ITU-R 601 weights); ``sharpness``: variance of the 4-neighbour Laplacian of the luminance.
  All three are computed on a nearest-neighbour copy whose longer side is at most
  :data:`THUMB_SIDE` pixels: the means are unbiased, and nearest sampling keeps pixel-level
  edges (an averaging downsample would hide the blur this is meant to see);
- categorical ``encoding`` (jpeg, png, webp, other), ``grey``, ``alpha``, ``rotated`` (yes/no).

Prediction statistics come from outputs the session already returns:

- classification (raw scores of ``decoding.output``): ``confidence`` (top-1 probability),
  ``margin`` (top-1 minus top-2), ``entropy`` (nats), categorical ``class`` (top-1 label);
- detection (decoded :class:`~visionyard.contract.postprocess.ImageResult`): ``boxes`` (count per
  image), ``box_area`` (each box's area over the image's), ``score`` (each box's), categorical
  ``class`` (each box's label).
- the embedding row, when the contract declares ``embedding_output``.

Measured cost (``.venv/bin/python bench/bench_monitor.py``, median, this shared 2-core
machine): :func:`image_features` on a 640x480 RGB image 0.47 ms (0.97 ms while other jobs
loaded the machine; decoding that image's JPEG took 3.5 ms); :func:`source_info` on its JPEG
bytes 0.08 ms; :func:`prediction_records` 0.006 ms per image of a batch of 32.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from visionyard.contract.postprocess import ImageResult, softmax
from visionyard.contract.preprocess import ImageMeta
from visionyard.contract.schema import ClassificationDecoding, VisionContract

#: Longer side of the copy that brightness, contrast and sharpness are computed on.
THUMB_SIDE = 160
IMAGE_FEATURES = (
    "width", "height", "aspect", "brightness_r", "brightness_g", "brightness_b",
    "contrast", "sharpness",
)  # fmt: skip
CLASSIFICATION_FEATURES = ("confidence", "margin", "entropy")
DETECTION_FEATURES = ("boxes", "box_area", "score")
CATEGORICAL_FEATURES = ("encoding", "grey", "alpha", "rotated", "class")
Encoding = Literal["jpeg", "png", "webp", "other"]
_ENCODINGS: dict[str, Encoding] = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp"}
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_STACK = 16  # thumbnails per stack: 16 of 160x120 as float32 (3.7 MB) stay in the CPU's caches
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class SourceInfo:
    """What decoding to RGB forgets: the encoding, and whether the image was grey, had an alpha
    channel or an EXIF orientation other than upright."""

    encoding: Encoding = "other"
    grey: bool = False
    alpha: bool = False
    rotated: bool = False


@dataclass(frozen=True)
class Record:
    """The statistics of one image, as profiles and windows hold them.

    ``numbers`` maps a continuous feature to its values for this image (one value for
    per-image features, one per box for ``box_area`` and ``score``); ``labels`` maps a
    categorical feature to its categories (one per image, or one per box for a detector's
    ``class``); ``embedding`` is the image's embedding row, when the model has one.
    """

    numbers: Mapping[str, tuple[float, ...]]
    labels: Mapping[str, tuple[str, ...]]
    embedding: NDArray[np.float32] | None = field(default=None, compare=False)

    def merge(self, other: Record) -> Record:
        """This record with ``other``'s features added (image + prediction statistics)."""
        embedding = other.embedding if other.embedding is not None else self.embedding
        return Record({**self.numbers, **other.numbers}, {**self.labels, **other.labels}, embedding)


def source_info(data: bytes | Image.Image) -> SourceInfo:
    """Read the header of encoded bytes (or an opened, not yet converted Pillow image)."""
    try:
        image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return SourceInfo()
    mode = image.mode
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)
    return SourceInfo(
        _ENCODINGS.get(image.format or "", "other"), mode in _GREY_MODES, has_alpha,
        orientation not in (1, None),
    )  # fmt: skip


def image_features(
    image: Image.Image | NDArray[np.uint8],
    source: SourceInfo | None = None,
    size: tuple[int, int] | None = None,
) -> Record:
    """Statistics of one decoded image (RGB, RGBA or L; a Pillow image or an ``[H, W(, C)]``
    uint8 array). Without ``source``, the flags come from the decoded image's own mode. Given
    ``size`` (the decoded image's), ``image`` may be its :func:`thumbnail`: the same record."""
    picture = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    info = source or source_info(picture)
    pixels = pixel_statistics([thumbnail(picture)])[0]
    return image_record(info, size or picture.size, pixels)


def image_record(
    info: SourceInfo, size: tuple[int, int], pixels: Mapping[str, tuple[float, ...]]
) -> Record:
    """The image statistics of an image of ``size`` (width, height) whose encoded bytes said
    ``info``, with its :func:`pixel_statistics`."""
    width, height = size
    numbers: dict[str, tuple[float, ...]] = {
        "width": (float(width),), "height": (float(height),), "aspect": (width / height,),
        **pixels,
    }  # fmt: skip
    labels = {
        "encoding": (info.encoding,), "grey": (_yes(info.grey),),
        "alpha": (_yes(info.alpha),), "rotated": (_yes(info.rotated),),
    }  # fmt: skip
    return Record(numbers, labels)


def prediction_records(
    outputs: Mapping[str, NDArray[np.generic]],
    results: Sequence[ImageResult],
    contract: VisionContract,
    metas: Sequence[ImageMeta],
) -> list[Record]:
    """Prediction statistics of a batch: raw ``outputs`` of ``session.run``, ``results`` of
    ``session.decode`` and the batch's ``metas`` (one record per image)."""
    decoding = contract.decoding
    if isinstance(decoding, ClassificationDecoding):
        scores = np.asarray(outputs[decoding.output])
        probs = scores.reshape(scores.shape[0], -1).astype(np.float64)
        if decoding.scores == "logits":
            probs = softmax(probs)
        records = classification_records(probs, contract.labels)
    else:
        records = [detection_record(r, m) for r, m in zip(results, metas, strict=True)]
    return [_with_embedding(rec, res) for rec, res in zip(records, results, strict=True)]


def classification_records(probs: NDArray[np.float64], labels: Sequence[str]) -> list[Record]:
    """Per image: top-1 confidence, margin to the second, entropy (nats) and predicted class."""
    top = np.sort(probs, axis=1)[:, ::-1]
    second = top[:, 1] if top.shape[1] > 1 else np.zeros(len(top))
    clipped = np.clip(probs, 1e-12, 1.0)
    entropy = -(probs * np.log(clipped)).sum(axis=1)
    best = probs.argmax(axis=1)
    return [
        Record(
            {"confidence": (float(c),), "margin": (float(c - s),), "entropy": (float(e),)},
            {"class": (labels[int(i)],)},
        )
        for c, s, e, i in zip(top[:, 0], second, entropy, best, strict=True)
    ]


def detection_record(result: ImageResult, meta: ImageMeta) -> Record:
    """Boxes per image, each box's area relative to the image, each box's score and label."""
    area = float(meta.width * meta.height) or 1.0
    found = result.detections
    sizes = tuple(
        max(0.0, (x2 - x1) * (y2 - y1)) / area for x1, y1, x2, y2 in (d.box for d in found)
    )
    numbers = {
        "boxes": (float(len(found)),),
        "box_area": sizes,
        "score": tuple(d.score for d in found),
    }
    return Record(numbers, {"class": tuple(d.label for d in found)})


def _with_embedding(record: Record, result: ImageResult) -> Record:
    if result.embedding is None:
        return record
    return Record(record.numbers, record.labels, result.embedding)


def pixel_statistics(thumbs: Sequence[Image.Image]) -> list[dict[str, tuple[float, ...]]]:
    """Channel means, luminance std and Laplacian variance of each :func:`thumbnail`, computed
    for many at once: thumbnails of one shape are stacked and each statistic is one numpy call
    for the stack, with per-image reductions over contiguous rows (so each image's values are
    those it gets alone).

    Why batches: each numpy call on a thumbnail releases Python's interpreter lock and takes it
    back. In the server, the event loop and the other inference worker want the lock too, so
    each of the ~20 calls an image can become a hand-over, a context switch. (perf: the
    server's time in the scheduler per request doubled with these statistics on.) Measured
    serving the 64x64 detector at 32 clients, side by side: computed in stacks of 16, the
    server answered 1.05x the images/s of one image at a time (median of 16 alternating rounds,
    13 won); without these statistics at all, 1.16x. So the server collects thumbnails
    (:class:`visionyard.serving.watch.PixelBacklog`) and computes them a batch at a time.
    Computed in work arrays the thread keeps (:func:`_scratch`) rather than numpy's new
    temporaries, a batch costs ~0.1 ms an image instead of ~0.25 (160x120 thumbnails, one
    thread), and the server answered 1.03x the images/s (16 alternating rounds, 13 won)."""
    found: list[dict[str, tuple[float, ...]]] = [{} for _ in thumbs]
    groups: dict[tuple[int, ...], list[int]] = {}
    arrays = [np.asarray(_rgb(thumb)) for thumb in thumbs]
    for index, array in enumerate(arrays):
        groups.setdefault(array.shape, []).append(index)
    chunks = [
        (shape, indices[start : start + _STACK])
        for shape, indices in groups.items()
        for start in range(0, len(indices), _STACK)
    ]
    for (height, width, _), indices in chunks:
        count, pixels = len(indices), height * width
        rgb = _scratch("rgb", (count, height, width, 3))  # [n, h, w, 3]
        for row, index in enumerate(indices):
            rgb[row] = arrays[index]  # uint8 -> float32, as astype
        means = rgb.reshape(count, pixels, 3).transpose(0, 2, 1) @ np.full(
            pixels, 1.0 / pixels, dtype=np.float32
        )
        lum = np.matmul(rgb, _LUMA, out=_scratch("lum", (count, height, width)))
        contrast = np.sqrt(_variances(lum.reshape(count, pixels)))
        sharpness = _laplacian_variances(lum)
        for row, index in enumerate(indices):
            found[index] = {
                "brightness_r": (float(means[row, 0]),),
                "brightness_g": (float(means[row, 1]),),
                "brightness_b": (float(means[row, 2]),),
                "contrast": (float(contrast[row]),),
                "sharpness": (sharpness[row],),
            }
    return found


_SCRATCH = threading.local()
_KEEP = _STACK * THUMB_SIDE * THUMB_SIDE * 3  # the largest work array kept (floats)


def _scratch(name: str, shape: tuple[int, ...]) -> NDArray[np.float32]:
    """A float32 work array of ``shape``, kept by the calling thread for its next batch (one per
    ``name``, grown when too small: at most ~10 MB a thread, for 16 thumbnails of 160x160).
    New arrays of a few MB for every batch were most of the statistics' cost: numpy's
    ``std``/``var`` make two full-size temporaries each, and fresh memory is touched page by
    page."""
    size = math.prod(shape)
    if size > _KEEP:  # not a thumbnail (a caller's own image): not kept for the thread
        return np.empty(shape, dtype=np.float32)
    flat: NDArray[np.float32] | None = getattr(_SCRATCH, name, None)
    if flat is None or flat.size < size:
        flat = np.empty(size, dtype=np.float32)
        setattr(_SCRATCH, name, flat)
    return flat[:size].reshape(shape)


def _variances(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    """``rows.var(axis=1)`` of float32 ``[n, k]`` rows, numpy's steps one for one (so the
    values are bit-identical) in a scratch array instead of new temporaries."""
    count = np.intp(rows.shape[1])
    mean = np.add.reduce(rows, axis=1, keepdims=True)
    np.true_divide(mean, count, out=mean, casting="unsafe")
    deviations = np.subtract(rows, mean, out=_scratch("work", rows.shape))
    np.square(deviations, out=deviations)
    total: NDArray[np.float32] = np.add.reduce(deviations, axis=1)
    np.true_divide(total, count, out=total, casting="unsafe")
    return total


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def thumbnail(image: Image.Image) -> Image.Image:
    """The copy the pixel statistics are computed on: RGB, longer side at most
    :data:`THUMB_SIDE` (nearest sampling). Cheap while the decoded image is still in the CPU's
    caches; the server takes it there and computes the statistics later (off the answer's path)."""
    width, height = image.size
    factor = max(width, height) / THUMB_SIDE
    if factor > 1:
        size = (max(1, round(width / factor)), max(1, round(height / factor)))
        image = image.resize(size, Image.Resampling.NEAREST)
    return _rgb(image)


def _laplacian_variances(lum: NDArray[np.float32]) -> list[float]:
    """The variance of each ``[h, w]`` luminance's 4-neighbour Laplacian (0 below 3x3 or when
    not finite)."""
    count, height, width = lum.shape
    if height < 3 or width < 3:
        return [0.0] * count
    laplacian = np.add(
        lum[:, 1:-1, :-2],
        lum[:, 1:-1, 2:],
        out=_scratch("laplacian", (count, height - 2, width - 2)),
    )
    laplacian += lum[:, :-2, 1:-1]
    laplacian += lum[:, 2:, 1:-1]
    laplacian -= np.multiply(lum[:, 1:-1, 1:-1], 4, out=_scratch("work", laplacian.shape))
    values = _variances(laplacian.reshape(count, -1))
    return [float(v) if math.isfinite(v) else 0.0 for v in values]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
