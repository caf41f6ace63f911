"""Named contract presets: the preprocessing conventions of well-known model families.

A preset is a partial contract (task, preprocessing, decoding) that states its numbers; the
labels come from elsewhere. ``visionyard import --preset NAME`` starts from one, fills what the
model itself says (input name, size, dtype, layout) and lets flags override any field.

==========  ==============  ================================================================
name        task            preprocessing (pixels 0..255, value = (pixel * scale - mean) / std)
==========  ==============  ================================================================
imagenet    classification  shorter side 256, centre crop 224, RGB, scale 1/255,
                            mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) (torchvision)
inception   classification  resize to 299x299, RGB, scale 1/255, mean 0.5, std 0.5 -> [-1, 1]
                            (Keras/TF Inception, Xception, MobileNet v1-v2 ``preprocess_input``)
tflite      classification  shorter side 256, centre crop 224, RGB, scale 1, mean 127, std 128
                            -> about [-0.99, 1.0] (TF-Lite / EfficientNet-Lite float models)
yolo        detection       letterbox 640x640, pad 114, RGB, scale 1/255, mean 0, std 1
                            -> [0, 1]; boxes xyxy in input pixels, score 0.25, NMS IoU 0.45
==========  ==============  ================================================================
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from visionyard.contract.schema import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VisionContract,
    parse_contract,
)
from visionyard.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """One preset: a name, a one-line description, and the contract fields it sets."""

    name: str
    description: str
    fields: Mapping[str, Any]

    def data(self) -> dict[str, Any]:
        """A fresh, mutable copy of the preset's contract fields (no labels)."""
        return copy.deepcopy(dict(self.fields))

    def contract(self, labels: tuple[str, ...] = ("class_0",)) -> VisionContract:
        """The full contract this preset gives with ``labels``, every default written out."""
        return parse_contract({**self.data(), "labels": list(labels)})


def _size(side: int) -> dict[str, int]:
    return {"height": side, "width": side}


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "imagenet",
            "torchvision ImageNet: shorter side 256, centre crop 224, ImageNet mean/std",
            {
                "task": "classification",
                "preprocessing": {
                    "input_size": _size(224),
                    "resize": "center_crop",  # shorter side 256: the schema's 224 -> 256 rule
                    "scale": 1 / 255,
                    "mean": list(IMAGENET_MEAN),
                    "std": list(IMAGENET_STD),
                },
                "decoding": {"kind": "classification", "scores": "logits"},
            },
        ),
        Preset(
            "inception",
            "Inception-style: resize 299x299, pixels scaled to [-1, 1] (mean 0.5, std 0.5)",
            {
                "task": "classification",
                "preprocessing": {
                    "input_size": _size(299),
                    "resize": "resize",
                    "scale": 1 / 255,
                    "mean": [0.5, 0.5, 0.5],
                    "std": [0.5, 0.5, 0.5],
                },
                "decoding": {"kind": "classification", "scores": "logits"},
            },
        ),
        Preset(
            "tflite",
            "TF-Lite float models: shorter side 256, centre crop 224, (pixel - 127) / 128",
            {
                "task": "classification",
                "preprocessing": {
                    "input_size": _size(224),
                    "resize": "center_crop",  # shorter side 256: the schema's 224 -> 256 rule
                    "scale": 1.0,
                    "mean": [127.0, 127.0, 127.0],
                    "std": [128.0, 128.0, 128.0],
                },
                "decoding": {"kind": "classification", "scores": "logits"},
            },
        ),
        Preset(
            "yolo",
            "YOLO detectors: letterbox 640x640 (pad 114), pixels 0..1, xyxy boxes in pixels",
            {
                "task": "detection",
                "preprocessing": {
                    "input_size": _size(640),
                    "resize": "letterbox",
                    "pad_value": 114,
                    "scale": 1 / 255,
                    "mean": [0.0, 0.0, 0.0],
                    "std": [1.0, 1.0, 1.0],
                },
                "decoding": {
                    "kind": "detection",
                    "box_format": "xyxy",
                    "coordinates": "input_pixels",
                    "scores": "probabilities",
                    "score_threshold": 0.25,
                    "nms_iou": 0.45,
                    "max_detections": 100,
                },
            },
        ),
    )
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is ONE error listing the presets."""
    try:
        return PRESETS[name.strip().lower()]
    except KeyError:
        known = ", ".join(f"{p.name} ({p.description})" for p in PRESETS.values())
        raise ConfigError(f"unknown contract preset {name!r}; the presets are: {known}") from None
