"""Running a pipeline in process: detect -> crop each box (with padding) -> classify the crops.

Each image is decoded ONCE, by the detector's contract (EXIF orientation, alpha), and the
detector's boxes come back in that image's pixels (the contract's decoding), so a crop is cut
from exactly the pixels the box was found on. Detections below ``min_score`` are dropped, the best
``max_crops`` kept, each box grown by ``crop.padding`` of its side and clipped to the image; a
crop narrower or lower than ``crop.min_size`` pixels is dropped too. The crops of a call are
classified in one batch by the classifier's contract (its own resize and normalisation).

The end result per box (:class:`PipelineDetection`) has the classifier's top label and index,
and the score ``detector score x classifier score`` (the box holds an object, and it is this
class), which is what COCO mAP of the end result ranks by; the detector's and the classifier's
own answers travel beside it. :class:`PipelineRunner` offers what evaluation needs of a session
(``contract``, ``variant``, ``detect``), so :func:`visionyard.evaluate.evaluate_detection` scores
the end result unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from visionyard.contract.image import DEFAULT_MAX_PIXELS
from visionyard.contract.postprocess import Detection, Prediction, classify, detect_outputs
from visionyard.contract.preprocess import (
    ImageMeta,
    Source,
    decode_for_contract,
    preprocess_image,
)
from visionyard.contract.schema import ClassificationDecoding, VisionContract
from visionyard.pipeline.spec import CropSpec, PipelineSpec
from visionyard.runtime.session import InferenceSession, Outputs

Box = tuple[float, float, float, float]
PixelBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class PipelineDetection:
    """One box of the end result: ``label``/``index`` are the classifier's."""

    box: Box
    score: float
    index: int
    label: str
    detector: Detection
    classifier: Prediction


@dataclass(frozen=True)
class Decoded:
    """Images decoded by the detector's contract and their detector input batch."""

    images: list[Image.Image]
    tensor: np.ndarray
    metas: list[ImageMeta] = field(default_factory=list)


def crop_box(box: Box, width: int, height: int, crop: CropSpec) -> PixelBox | None:
    """The pixel rectangle ``(left, top, right, bottom)`` to cut for ``box``: grown by
    ``crop.padding`` of the box's side on every side, rounded outwards, clipped to the image;
    None when it is narrower or lower than ``crop.min_size``."""
    x1, y1, x2, y2 = box
    pad_x, pad_y = (x2 - x1) * crop.padding, (y2 - y1) * crop.padding
    left, top = max(0, math.floor(x1 - pad_x)), max(0, math.floor(y1 - pad_y))
    right, bottom = min(width, math.ceil(x2 + pad_x)), min(height, math.ceil(y2 + pad_y))
    if right - left < crop.min_size or bottom - top < crop.min_size:
        return None
    return left, top, right, bottom


def pipeline_contract(detector: VisionContract, classifier: VisionContract) -> VisionContract:
    """The end result's contract: the detector's input and box decoding, labelled by the
    classifier's labels (what a pipeline version records, and what evaluation checks)."""
    data = detector.model_dump(mode="json")
    data["labels"] = list(classifier.labels)
    return VisionContract.model_validate(data)


class PipelineRunner:
    """Detect, crop and classify with two open sessions (thread-safe: no mutable state)."""

    def __init__(
        self,
        spec: PipelineSpec,
        detector: InferenceSession,
        classifier: InferenceSession,
        versions: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.detector = detector
        self.classifier = classifier
        #: role -> ``NAME/VERSION`` of the stage (shown in results and responses)
        self.versions = dict(versions or {})
        self.contract = pipeline_contract(detector.contract, classifier.contract)

    @property
    def variant(self) -> str:
        return f"{self.detector.variant}+{self.classifier.variant}"

    def decode(self, sources: Sequence[Source], max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
        """Decode (by the detector's contract) and preprocess for the detector."""
        contract = self.detector.contract
        images = [
            source if isinstance(source, Image.Image) else
            decode_for_contract(source, contract, max_pixels)
            for source in sources
        ]  # fmt: skip
        arrays, metas = zip(*(preprocess_image(image, contract) for image in images), strict=True)
        return Decoded(images, np.stack(arrays), list(metas))

    def detect(
        self, sources: Sequence[Source], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[list[PipelineDetection]]:
        """The end result per image (what evaluation calls)."""
        if not sources:
            return []
        decoded = self.decode(sources, max_pixels)
        return self.finish(self.detector.run(decoded.tensor), decoded.metas, decoded.images)

    def finish(
        self, raw: Outputs, metas: Sequence[ImageMeta], images: Sequence[Image.Image]
    ) -> list[list[PipelineDetection]]:
        """From the detector's raw outputs: decode its boxes, crop, classify the crops."""
        found = detect_outputs(raw, self.detector.contract, metas)
        kept = [self._kept(dets, image) for dets, image in zip(found, images, strict=True)]
        crops = [crop for row in kept for _, crop in row]
        predictions = iter(self.classify_crops(crops))
        return [[_joined(det, next(predictions)) for det, _ in row] for row in kept]

    def classify_crops(self, crops: Sequence[Image.Image]) -> list[Prediction]:
        """The classifier's top prediction per crop (one batch)."""
        if not crops:
            return []
        contract = self.classifier.contract
        tensor = np.stack([preprocess_image(crop, contract)[0] for crop in crops])
        decoding = contract.decoding
        assert isinstance(decoding, ClassificationDecoding)  # checked at registration and load
        outputs = self.classifier.run(tensor)
        return [row[0] for row in classify(outputs[decoding.output], contract, top_k=1)]

    def _kept(
        self, detections: Sequence[Detection], image: Image.Image
    ) -> list[tuple[Detection, Image.Image]]:
        """The detections to classify, best first, with their crops."""
        ranked = sorted(
            (d for d in detections if d.score >= self.spec.min_score), key=lambda d: -d.score
        )
        kept = []
        for det in ranked[: self.spec.max_crops]:
            rect = crop_box(det.box, image.width, image.height, self.spec.crop)
            if rect is not None:
                kept.append((det, image.crop(rect)))
        return kept


def _joined(det: Detection, top: Prediction) -> PipelineDetection:
    return PipelineDetection(det.box, det.score * top.score, top.index, top.label, det, top)


def detection_json(det: PipelineDetection) -> dict[str, object]:
    """A box of the end result as JSON: a detector's keys (``box``, ``score``, ``index``,
    ``label``: the end result) plus each stage's own answer."""
    return {
        "box": [round(float(v), 3) for v in det.box],
        "score": float(det.score),
        "index": det.index,
        "label": det.label,
        "detector": {
            "label": det.detector.label, "index": det.detector.index,
            "score": float(det.detector.score),
        },
        "classifier": {
            "label": det.classifier.label, "index": det.classifier.index,
            "score": float(det.classifier.score),
        },
    }  # fmt: skip
