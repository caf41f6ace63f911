"""Helpers for the pipeline tests: a scene whose two objects sit where the fixed detector
(:func:`tests.fixtures.runtime.fixed_detector_onnx`) puts its boxes, and spec files.

On a 64x64 image the detector's boxes are ``(8, 8, 24, 24)`` (cat) and ``(32, 32, 56, 60)``
(dog) in the image's own pixels; painting each box a colour makes the colour classifier's answer
for each crop depend on the crop's pixels alone.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from PIL import Image, ImageDraw

from tests.fixtures.runtime import COLOURS, DETECTOR_BOXES
from tests.registry_support import RED_AS_GREEN, log_colour_run, log_detector_run
from visionyard.pipeline.registry import register_pipeline
from visionyard.registry import Registry
from visionyard.settings import Settings

BACKGROUND = (128, 128, 128)


def scene(first: str, second: str, size: int = 64, fmt: str = "PNG") -> bytes:
    """A grey image with the first box painted ``first`` and the second ``second``."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    scale = size / 64
    for (box, _), colour in zip(DETECTOR_BOXES, (first, second), strict=True):
        x1, y1, x2, y2 = (v * scale for v in box)
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=COLOURS[colour])
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_spec(path: Path, detector: str, classifier: str, **extra: Any) -> Path:
    body = {"pipeline": 1, "detector": detector, "classifier": classifier, **extra}
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


class PipelineWorld(NamedTuple):
    settings: Settings
    detector: str  # registered model names
    classifier: str
    pipeline: str
    red_as_green: str  # a logged run: a classifier that calls red green
    root: Path


def make_pipeline_world(root: Path, sqlite_template: Path) -> PipelineWorld:
    """A store with the fixed detector (v1), the colour classifier (v1, production) and a
    pipeline over them (v1, production; the classifier followed by its alias)."""
    home = root / ".visionyard"
    home.mkdir(parents=True)
    shutil.copyfile(sqlite_template, home / "mlflow.db")
    settings = Settings(home=home, tracking={"experiment": "pipeline-tests"})
    registry = Registry(settings)
    detector, classifier, pipeline = (f"{k}-{uuid.uuid4().hex[:6]}" for k in ("det", "cls", "pipe"))
    registry.register(log_detector_run(settings, root), detector)
    registry.register(log_colour_run(settings, root), classifier)
    registry.promote(classifier, "1", "production")
    spec = write_spec(root / "pipeline.yaml", f"{detector}/1", f"{classifier}@production")
    register_pipeline(registry, spec, pipeline)
    registry.promote(pipeline, "1", "production")
    red_as_green = log_colour_run(settings, root, colours=RED_AS_GREEN)
    return PipelineWorld(settings, detector, classifier, pipeline, red_as_green, root)


def scene_coco(root: Path, scenes: list[tuple[str, str]]) -> Path:
    """A COCO folder (``images/`` + ``annotations.json``) of :func:`scene` images, each box
    labelled with its painted colour (the colour classifier's labels are the categories)."""
    (root / "images").mkdir(parents=True)
    names = list(COLOURS)
    images, annotations = [], []
    for i, colours in enumerate(scenes, start=1):
        (root / "images" / f"{i}.png").write_bytes(scene(*colours))
        images.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 64})
        for (box, _), colour in zip(DETECTOR_BOXES, colours, strict=True):
            x1, y1, x2, y2 = box
            annotations.append({
                "id": len(annotations) + 1, "image_id": i, "iscrowd": 0,
                "category_id": names.index(colour) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
            })  # fmt: skip
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(names)]
    body = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(body), encoding="utf-8")
    return root
