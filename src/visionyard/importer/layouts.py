"""The detection output layout of an imported ONNX model, read from its output shapes.

The layouts of :class:`~visionyard.contract.schema.DetectionDecoding`, recognised as:

- ``boxes_scores``: outputs named ``boxes`` and ``scores`` of rank 3, or exactly two rank-3
  outputs of which one alone ends in 4 (the boxes ``[N, K, 4]``; the other holds the per-class
  scores ``[N, K, C]``);
- ``yolo``: exactly one rank-3 output ``[N, 4 + C, K]`` with at least 5 rows (as Ultralytics
  exports YOLOv8 and later); when ``4 + C`` and ``K`` are both fixed, ``4 + C <= K``, so that a
  transposed ``[N, K, 4 + C]`` tensor is refused rather than read as ``K - 4`` classes. Its boxes
  are ``cxcywh`` (a flag may still say otherwise);
- ``nms``: three or four outputs of a model that ran NMS itself (TensorRT EfficientNMS,
  torchvision, TF object detection): boxes ``[N, D, 4]``, scores and
  class indices ``[N, D]``, and optionally the count per image ``[N]`` or ``[N, 1]``. The class
  output is the integer one or, when both are float (TF), the one named for classes or labels;
- ``end2end``: exactly one rank-3 output ``[N, D, 6]`` with ``D`` dynamic or above 6 (Ultralytics
  ``nms=True``, end-to-end YOLOv10): x1, y1, x2, y2, score, class per row. Tried before ``yolo``,
  which a dynamic ``[N, D, 6]`` would fit too.

A layout the flags state (``--set decoding.layout=...``) is the only one tried; output names the
flags give are taken as given (the runtime's signature check then names any mismatch). Outputs
that fit no layout are refused with ONE error naming every output's shape and the way to say it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from visionyard.errors import ContractError
from visionyard.runtime.signature import TensorMeta

Outputs = Sequence[TensorMeta]
OUTPUT_FIELDS = ("boxes_output", "scores_output", "output", "classes_output", "count_output")
SHAPES = {
    "boxes_scores": "boxes [N, K, 4] + per-class scores [N, K, C]",
    "end2end": "end-to-end [N, D, 6]",
    "yolo": "YOLO [N, 4 + C, K]",
    "nms": "post-NMS boxes [N, D, 4] + scores [N, D] + classes [N, D] (+ count [N])",
}


def detection_outputs(outputs: Outputs, stated: Mapping[str, Any]) -> dict[str, Any]:
    """The decoding fields (layout, output names) that ``outputs`` imply, given the decoding
    fields the preset and the flags already ``stated``; ContractError when none fits."""
    layout = stated.get("layout")
    if any(field in stated for field in OUTPUT_FIELDS) or (layout and layout not in SHAPES):
        return _layout_facts(layout)  # names given (or a layout the schema will refuse)
    for name in [layout] if layout else list(SHAPES):
        found = _MATCHERS[name](outputs)
        if found is not None:
            return {"layout": name, **found, **_layout_facts(name)}
    raise ContractError("decoding.layout", _refusal(outputs, layout))


def _layout_facts(layout: str | None) -> dict[str, Any]:
    return {"box_format": "cxcywh"} if layout == "yolo" else {}


def _refusal(outputs: Outputs, layout: str | None) -> str:
    have = ", ".join(o.describe() for o in outputs) or "none"
    how = (
        "name the outputs with --set decoding.boxes_output=NAME (scores_output, output, "
        "classes_output, count_output)"
    )
    if layout:
        return (
            f"layout {layout!r} reads {SHAPES[layout]}, but the model's outputs are {have}: {how}"
        )
    return (
        f"the model's outputs {have} fit no detection layout visionyard reads "
        f"({'; '.join(SHAPES.values())}): state one with --set decoding.layout=boxes_scores|yolo|"
        f"nms|end2end and {how}"
    )


def _boxes_scores(outputs: Outputs) -> dict[str, Any] | None:
    by_name = {o.name: o for o in outputs}
    if "boxes" in by_name and "scores" in by_name:
        boxes, scores = by_name["boxes"], by_name["scores"]
    elif len(outputs) == 2 and [o.fixed(-1) == 4 for o in outputs].count(True) == 1:
        boxes, scores = sorted(outputs, key=lambda o: o.fixed(-1) != 4)
    else:
        return None
    if not (_rank(boxes, 3) and _rank(scores, 3)) or boxes.fixed(-1) not in (4, None):
        return None
    return {"boxes_output": boxes.name, "scores_output": scores.name}


def _yolo(outputs: Outputs) -> dict[str, Any] | None:
    if len(outputs) != 1 or len(outputs[0].shape) != 3:
        return None
    rows, anchors = outputs[0].fixed(1), outputs[0].fixed(2)
    if rows is not None and (rows < 5 or (anchors is not None and rows > anchors)):
        return None
    return {"output": outputs[0].name}


def _end2end(outputs: Outputs) -> dict[str, Any] | None:
    if len(outputs) != 1 or len(outputs[0].shape) != 3 or outputs[0].fixed(-1) != 6:
        return None
    rows = outputs[0].fixed(1)
    return None if rows is not None and rows <= 6 else {"output": outputs[0].name}


def _nms(outputs: Outputs) -> dict[str, Any] | None:
    if len(outputs) not in (3, 4):
        return None
    boxes = [o for o in outputs if len(o.shape) == 3 and o.fixed(-1) == 4]
    count = [o for o in outputs if _is_count(o)]
    pairs = [o for o in outputs if len(o.shape) == 2 and o not in count]
    if len(boxes) != 1 or len(count) != len(outputs) - 3 or len(pairs) != 2:
        return None
    classes = _class_output(pairs)
    if classes is None:
        return None
    scores = pairs[1] if pairs[0] is classes else pairs[0]
    found = {"boxes_output": boxes[0].name, "scores_output": scores.name}
    found["classes_output"] = classes.name
    return found | ({"count_output": count[0].name} if count else {})


def _is_count(output: TensorMeta) -> bool:
    """``[N]``, or ``[N, 1]`` when integer or named for a count (``num_dets``)."""
    if len(output.shape) == 1:
        return True
    hinted = _is_int(output) or _named(output, "num", "count")
    return len(output.shape) == 2 and output.fixed(-1) == 1 and hinted


def _class_output(pairs: Outputs) -> TensorMeta | None:
    ints = [o for o in pairs if _is_int(o)]
    if len(ints) == 1:
        return ints[0]
    named = [o for o in pairs if _named(o, "class", "label")]
    return named[0] if len(named) == 1 and not ints else None


def _is_int(output: TensorMeta) -> bool:
    return output.dtype.startswith(("int", "uint"))


def _named(output: TensorMeta, *words: str) -> bool:
    return any(word in output.name.lower() for word in words)


def _rank(output: TensorMeta, rank: int) -> bool:
    """The rank, when ONNX states one (an output without shape information passes)."""
    return not output.shape or len(output.shape) == rank


_MATCHERS: dict[str, Callable[[Outputs], dict[str, Any] | None]] = {
    "boxes_scores": _boxes_scores,
    "end2end": _end2end,
    "yolo": _yolo,
    "nms": _nms,
}
