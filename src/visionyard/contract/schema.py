"""The versioned vision contract: what a model expects as input and how its outputs are read.

The contract is data (JSON) that travels with every model version. Pydantic validates it;
:func:`parse_contract` turns the first validation problem into ONE :class:`ContractError` whose
``field`` is a dotted path (``preprocessing.input_size.height``).

Preprocessing, in this order (implemented once, in :mod:`visionyard.contract.preprocess`):

1. decode to 8-bit RGB (:mod:`visionyard.contract.image`), EXIF orientation applied or ignored;
   greyscale replicated, palette expanded, 16-bit scaled by 1/257, alpha composited over
   ``conversion.background`` or dropped;
2. geometry, with Pillow's resampling (the same as torchvision's PIL backend):

   - ``resize``: stretch to ``input_size`` (aspect ratio not kept);
   - ``center_crop``: shorter side to ``resize_shorter`` (longer side ``int(S * long / short)``,
     as torchvision's ``Resize(int)``), then a centred ``input_size`` crop (offsets
     ``round((resized - crop) / 2)``, as torchvision's ``CenterCrop``). ``resize_shorter``
     defaults to ``round(max(height, width) * 256 / 224)``, the ImageNet convention (224 -> 256);
   - ``letterbox``: scale by ``min(H / h, W / w)`` keeping the aspect ratio (sizes rounded), then
     pad to ``input_size`` with ``pad_value`` on all channels, the image centred (left/top pad is
     the floor of half the padding, as in YOLO letterboxing);

3. channels reordered to ``color_order``; 4. ``value = (pixel * scale - mean) / std`` per channel,
   where ``mean``/``std`` are given in the tensor's channel order (i.e. already BGR for BGR
   models); 5. ``layout`` NCHW or NHWC; 6. cast to ``dtype``. ``uint8`` models take raw pixels, so
   they require ``scale=1, mean=0, std=1`` (normalisation then lives inside the model).

Outputs. Classification: one output ``[N, C]`` of logits (softmax applied) or probabilities, with
``C == len(labels)``. Detection, by ``decoding.layout``; boxes are in ``box_format``, coordinates
either ``normalized`` (0..1 of the input width/height) or ``input_pixels`` (pixels of the
preprocessed input tensor); scores are probabilities, or logits to which a sigmoid is applied:

- ``boxes_scores`` (the default): boxes ``[N, K, 4]`` and per-class scores ``[N, K, C]`` (``K``
  candidate boxes), then the contract's thresholds and class-wise NMS;
- ``yolo``: one output ``[N, 4 + C, K]`` (``output``, default ``output0``; box first, then the
  per-class scores, as Ultralytics YOLOv8+ exports it; ``box_format`` defaults to ``cxcywh``),
  read as the default layout once transposed;
- ``nms``: outputs of a model that ran NMS itself: boxes ``[N, D, 4]``, scores ``[N, D]``,
  class indices ``[N, D]`` (``classes_output``) and optionally the valid count per image ``[N]``
  or ``[N, 1]`` (``count_output``; without it rows with a negative class are padding). Only the
  score threshold and ``max_detections`` apply;
- ``end2end``: the same in one output ``[N, D, 6]`` (``output``, default ``output0``): box, score,
  class per row (Ultralytics ``nms=True`` and end-to-end YOLOv10 exports).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from visionyard.contract.problems import FieldProblem, first_problem
from visionyard.errors import ContractError

Task = Literal["classification", "detection"]
ResizePolicy = Literal["resize", "center_crop", "letterbox"]
DetectionLayout = Literal["boxes_scores", "yolo", "nms", "end2end"]
Channel = Annotated[int, Field(ge=0, le=255)]
PositiveFloat = Annotated[float, Field(gt=0)]
Unit = Annotated[float, Field(ge=0, le=1)]
OutputName = Annotated[str, Field(min_length=1)]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSize(_Model):
    height: int = Field(gt=0)
    width: int = Field(gt=0)


class Conversion(_Model):
    """How non-RGB images become RGB. Only ``alpha`` and ``background`` are choices in v1; the
    other fields record the fixed rules so that the contract states them."""

    greyscale: Literal["replicate"] = "replicate"
    palette: Literal["expand"] = "expand"
    high_bit_depth: Literal["scale_to_8bit"] = "scale_to_8bit"
    alpha: Literal["composite", "drop"] = "composite"
    background: tuple[Channel, Channel, Channel] = (255, 255, 255)


class Preprocessing(_Model):
    input_size: InputSize
    resize: ResizePolicy = "resize"
    resize_shorter: int | None = Field(None, gt=0)
    pad_value: Channel = 114
    interpolation: Literal["bilinear", "nearest", "bicubic"] = "bilinear"
    color_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    scale: PositiveFloat = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = (1.0, 1.0, 1.0)
    exif: Literal["apply", "ignore"] = "apply"
    conversion: Conversion = Field(default_factory=Conversion)

    @model_validator(mode="before")
    @classmethod
    def _default_shorter_side(cls, data: Any) -> Any:
        """Write the centre-crop default into the data, so the contract states the number."""
        if not isinstance(data, Mapping) or data.get("resize") != "center_crop":
            return data
        if data.get("resize_shorter") is not None:
            return data
        size = data.get("input_size")
        if isinstance(size, InputSize):
            size = size.model_dump()
        if isinstance(size, Mapping) and _all_ints(size.get("height"), size.get("width")):
            return {**data, "resize_shorter": round(max(size["height"], size["width"]) * 256 / 224)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_shorter_side(self)
        if self.dtype == "uint8" and (self.scale, self.mean, self.std) != (1, (0, 0, 0), (1, 1, 1)):
            raise FieldProblem("scale", "uint8 input takes raw pixels: set scale=1, mean=0, std=1")
        return self


class ClassificationDecoding(_Model):
    kind: Literal["classification"] = "classification"
    output: OutputName = "logits"
    scores: Literal["logits", "probabilities"] = "logits"
    top_k: int = Field(5, ge=1)


class DetectionDecoding(_Model):
    """How a detector's outputs are read; ``layout`` picks the outputs (module docstring).

    Output-name fields a layout does not read are not serialised, nor is the default layout:
    every contract written before layouts existed keeps its bytes and its digest.
    """

    kind: Literal["detection"] = "detection"
    layout: DetectionLayout = "boxes_scores"
    boxes_output: OutputName = "boxes"
    scores_output: OutputName = "scores"
    output: OutputName | None = None
    classes_output: OutputName | None = None
    count_output: OutputName | None = None
    scores: Literal["probabilities", "logits"] = "probabilities"
    box_format: Literal["xyxy", "xywh", "cxcywh"] = "xyxy"
    coordinates: Literal["normalized", "input_pixels"] = "input_pixels"
    score_threshold: Unit = 0.25
    nms_iou: Unit = 0.45
    max_detections: int = Field(100, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _layout_defaults(cls, data: Any) -> Any:
        """One-tensor layouts read ``output0``; a YOLO tensor holds cxcywh boxes."""
        if isinstance(data, Mapping) and data.get("layout") == "yolo":
            return {"output": "output0", "box_format": "cxcywh", **data}
        if isinstance(data, Mapping) and data.get("layout") == "end2end":
            return {"output": "output0", **data}
        return data

    @model_validator(mode="after")
    def _layout_outputs(self) -> Self:
        if self.layout in ("yolo", "end2end") and self.output is None:
            raise FieldProblem("output", f"required with layout {self.layout!r} (its one output)")
        if self.layout == "nms" and self.classes_output is None:
            raise FieldProblem("classes_output", "required with layout 'nms' (class per box)")
        return self

    @model_serializer(mode="wrap")
    def _written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        read = _LAYOUT_OUTPUTS[self.layout]
        for name in _OUTPUT_FIELDS:
            if name not in read:
                data.pop(name, None)
        if self.layout == "boxes_scores":
            data.pop("layout", None)
        return data

    @property
    def output_fields(self) -> dict[str, str]:
        """``{field: output name}`` of the outputs this layout reads, in their order."""
        named = {f: getattr(self, f) for f in _LAYOUT_OUTPUTS[self.layout]}
        return {f: name for f, name in named.items() if name is not None}


_LAYOUT_OUTPUTS: dict[str, tuple[str, ...]] = {
    "boxes_scores": ("boxes_output", "scores_output"),
    "yolo": ("output",),
    "nms": ("boxes_output", "scores_output", "classes_output", "count_output"),
    "end2end": ("output",),
}
_OUTPUT_FIELDS = ("boxes_output", "scores_output", "output", "classes_output", "count_output")


Decoding = Annotated[ClassificationDecoding | DetectionDecoding, Field(discriminator="kind")]


class VisionContract(_Model):
    """Version 1 of the vision contract; see the module docstring for the semantics."""

    contract_version: Literal["1"] = "1"
    task: Task
    input_name: OutputName = "input"
    preprocessing: Preprocessing
    labels: tuple[str, ...] = Field(min_length=1)
    decoding: Decoding
    embedding_output: OutputName | None = None

    @model_validator(mode="before")
    @classmethod
    def _decoding_kind_from_task(cls, data: Any) -> Any:
        """Let a contract omit ``decoding.kind``: it defaults to the task."""
        if isinstance(data, Mapping) and isinstance(data.get("decoding"), Mapping):
            decoding = data["decoding"]
            if "kind" not in decoding and data.get("task") in ("classification", "detection"):
                return {**data, "decoding": {**decoding, "kind": data["task"]}}
        return data

    @field_validator("labels")
    @classmethod
    def _unique_names(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        seen: dict[str, int] = {}
        for index, name in enumerate(labels):
            if not name.strip():
                raise FieldProblem(str(index), "empty label name")
            if name in seen:
                raise ValueError(f"duplicate label {name!r} at {seen[name]} and {index}")
            seen[name] = index
        return labels

    @model_validator(mode="after")
    def _decoding_matches_task(self) -> Self:
        if self.decoding.kind != self.task:
            problem = f"task is {self.task!r} but the decoding is for {self.decoding.kind!r}"
            raise FieldProblem("decoding.kind", problem)
        return self

    @property
    def output_names(self) -> list[str]:
        """The ONNX outputs this contract reads (embedding last, if any)."""
        if isinstance(self.decoding, ClassificationDecoding):
            names = [self.decoding.output]
        else:
            names = list(self.decoding.output_fields.values())
        return names + ([self.embedding_output] if self.embedding_output else [])

    def to_json(self, *, indent: int | None = 2) -> str:
        """The contract as JSON, every default written out."""
        return self.model_dump_json(indent=indent)

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace: the bytes that :meth:`digest` hashes."""
        return canonical_json(self.model_dump(mode="json"))

    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical JSON; equal contracts have equal digests."""
        return "sha256:" + canonical_sha256(self.model_dump(mode="json"))

    @classmethod
    def classification(
        cls,
        labels: Sequence[str],
        *,
        input_size: int | tuple[int, int] = 224,
        resize: ResizePolicy = "center_crop",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        decoding: Mapping[str, Any] | None = None,
        input_name: str = "input",
        embedding_output: str | None = None,
        **preprocessing: Any,
    ) -> VisionContract:
        """An ImageNet-style classifier contract; ``input_size`` is a side or (height, width).

        ``decoding`` holds :class:`ClassificationDecoding` fields, ``preprocessing`` any other
        :class:`Preprocessing` field; every problem is raised as a :class:`ContractError`.
        """
        pre = _pre(input_size, resize, mean, std, preprocessing)
        top = {"input_name": input_name, "embedding_output": embedding_output}
        return _build("classification", labels, pre, decoding, top)

    @classmethod
    def detection(
        cls,
        labels: Sequence[str],
        *,
        input_size: int | tuple[int, int] = 640,
        resize: ResizePolicy = "letterbox",
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        decoding: Mapping[str, Any] | None = None,
        input_name: str = "input",
        embedding_output: str | None = None,
        **preprocessing: Any,
    ) -> VisionContract:
        """A YOLO-style detector contract (letterbox, 0..1 inputs, xyxy input-pixel boxes);
        ``decoding`` holds :class:`DetectionDecoding` fields."""
        pre = _pre(input_size, resize, mean, std, preprocessing)
        top = {"input_name": input_name, "embedding_output": embedding_output}
        return _build("detection", labels, pre, decoding, top)


def _all_ints(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _check_shorter_side(pre: Preprocessing) -> None:
    size = pre.input_size
    if pre.resize != "center_crop":
        if pre.resize_shorter is not None:
            raise FieldProblem("resize_shorter", "only used with resize='center_crop'")
        return
    if pre.resize_shorter is not None and pre.resize_shorter < max(size.height, size.width):
        raise FieldProblem(
            "resize_shorter",
            f"must be >= the larger input side ({max(size.height, size.width)}) so the crop fits",
        )


def _pre(
    size: int | tuple[int, int],
    resize: ResizePolicy,
    mean: Sequence[float],
    std: Sequence[float],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    height, width = (size, size) if isinstance(size, int) else size
    base = {"input_size": {"height": height, "width": width}, "resize": resize}
    return {**base, "mean": list(mean), "std": list(std), **extra}


def _build(
    task: Task,
    labels: Sequence[str],
    pre: dict[str, Any],
    decoding: Mapping[str, Any] | None,
    top: dict[str, Any],
) -> VisionContract:
    data = {"task": task, "labels": list(labels), "preprocessing": pre, **top}
    return parse_contract({**data, "decoding": dict(decoding or {})})


def canonical_json(value: object) -> str:
    """Sorted keys, no whitespace, non-ASCII kept: the JSON text that content digests hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_sha256(value: object) -> str:
    """Hex sha256 of :func:`canonical_json` encoded as UTF-8 (contracts, manifests, digests)."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def parse_contract(data: Mapping[str, Any] | str | bytes) -> VisionContract:
    """Validate a mapping or JSON text; the first problem becomes ONE :class:`ContractError`."""
    try:
        if isinstance(data, str | bytes):
            return VisionContract.model_validate_json(data)
        return VisionContract.model_validate(data)
    except ValidationError as exc:
        raise first_problem(exc) from exc


def load_contract(source: Path | str) -> VisionContract:
    """Load from a file; a ``str`` starting with ``{`` is taken as JSON text, else as a path."""
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return parse_contract(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(str(path), f"cannot read the contract file ({exc})") from exc
    return parse_contract(text)
