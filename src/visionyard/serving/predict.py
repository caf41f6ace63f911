"""``POST /v1/models/{name}:predict``: a raw image body, a multipart upload or a KServe v1
``{"instances": [...]}`` body in, JSON out.

A convenience over the OIP infer call: the images become the ``image`` BYTES input and the
answer is the contract's decoding as plain JSON (``predictions`` per image for classifiers,
``detections`` per image for detectors, boxes in original image pixels).

**KServe v1** (``Content-Type: application/json``): KServe's v1 protocol is TensorFlow
Serving's REST API, where binary values travel as ``{"b64": "..."}``. Each instance is an image
as ``{"b64": "..."}``, or an object holding one under ``image_bytes``, ``image`` or ``data``
(KServe's and TF Serving's image samples), as ``{"b64": ...}`` or a base64 string. The answer is
``{"predictions": [...]}``, one item per instance: what the raw body answers per image (top-k
``{label, score, index}`` for a classifier, the detections for a detector). :func:`parse_v1`
refuses any other shape with one :class:`InvalidInputError` that says what to send; it counts
the instances against ``Limits.max_images`` before decoding any of them. Bodies above
``INLINE_JSON_BYTES`` are parsed in the REST adapter's helper process
(:func:`parse_v1_elsewhere`): parsing and base64 decoding hold the interpreter lock, ~3 ms per
MB here (35 ms for 64 images of 130 KB), time the event loop would not serve anyone else.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from visionyard.contract.schema import ClassificationDecoding, VisionContract
from visionyard.errors import InvalidInputError, VisionyardError
from visionyard.serving.codec import json_number, object_array
from visionyard.serving.model import IMAGE_INPUT
from visionyard.serving.rest.codec import json_problem
from visionyard.serving.types import InferRequest, InferResponse, RequestedOutput, Tensor

MAX_FILES = 64


async def read_images(request: Request) -> list[bytes]:
    """The uploaded files (multipart/form-data, in order) or the raw body as one image."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        body = await request.body()
        return [body]
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
    except VisionyardError:  # e.g. the body limit, raised while the upload streams in
        raise
    except Exception as exc:  # python-multipart / starlette raise several types on bad forms
        raise InvalidInputError(f"cannot read the multipart upload: {exc}") from exc
    images = [await item.read() for _, item in form.multi_items() if isinstance(item, UploadFile)]
    await form.close()
    if not images:
        raise InvalidInputError("the multipart upload holds no file")
    return images


def predict_request(model: str, images: list[bytes], contract: VisionContract) -> InferRequest:
    tensor = Tensor(IMAGE_INPUT, "BYTES", (len(images),), object_array(images))
    names = _outputs(contract)
    return InferRequest(model, None, [tensor], [RequestedOutput(n) for n in names])


def to_json(response: InferResponse) -> dict[str, Any]:
    tensors = {t.name: t.data for t in response.outputs}
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.parameters:
        body["parameters"] = response.parameters
    if "detections" in tensors:
        body["detections"] = [json.loads(item) for item in tensors["detections"]]
        return body
    labels, scores, indices = (tensors[n] for n in _CLASSIFICATION)
    body["predictions"] = [
        [
            {"label": lab.decode(), "score": json_number(float(score)), "index": int(index)}
            for lab, score, index in zip(row_l, row_s, row_i, strict=True)
        ]
        for row_l, row_s, row_i in zip(labels, scores, indices, strict=True)
    ]
    return body


_CLASSIFICATION = ("top_labels", "top_scores", "top_indices")


def _outputs(contract: VisionContract) -> tuple[str, ...]:
    if isinstance(contract.decoding, ClassificationDecoding):
        return _CLASSIFICATION
    return ("detections",)


#: Fields of an instance object that may hold its image (KServe / TF Serving samples).
V1_IMAGE_FIELDS = ("image_bytes", "image", "data")
_V1_SHAPE = 'a KServe v1 body is {"instances": [{"b64": "<base64 image>"}, ...]}'


def is_v1(content_type: str) -> bool:
    """Whether a ``:predict`` body is KServe v1 JSON (else it is a raw image)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def parse_v1(body: bytes, max_images: int) -> list[bytes]:
    """The images of a KServe v1 body, in order; :class:`InvalidInputError` for a wrong shape."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"the body is not JSON ({json_problem(exc)}); {_V1_SHAPE}") from exc
    instances = value.get("instances") if isinstance(value, dict) else None
    if not isinstance(instances, list) or not instances:
        found = "no instances" if instances is None else "instances is not a non-empty list"
        raise InvalidInputError(f"{found}: {_V1_SHAPE}")
    if len(instances) > max_images:
        raise InvalidInputError(
            f"{len(instances)} instances in one request; send 1 to {max_images}"
        )
    return [_v1_image(i, item) for i, item in enumerate(instances)]


def parse_v1_elsewhere(body: bytes, max_images: int) -> tuple[bool, list[bytes] | str]:
    """:func:`parse_v1` in the helper process: the images, or the problem."""
    try:
        return True, parse_v1(body, max_images)
    except InvalidInputError as exc:
        return False, exc.problem


def _v1_image(index: int, item: object) -> bytes:
    encoded = item.get("b64") if isinstance(item, dict) else None
    if isinstance(item, dict) and encoded is None:
        inner = next((item[f] for f in V1_IMAGE_FIELDS if f in item), None)
        encoded = inner.get("b64") if isinstance(inner, dict) else inner
    if not isinstance(encoded, str):
        raise InvalidInputError(
            f'instance {index} holds no image: send {{"b64": "<base64 image>"}} '
            f"(or an object with it under {', '.join(V1_IMAGE_FIELDS)})"
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"instance {index}: invalid base64 ({exc})") from exc


def to_v1_json(response: InferResponse) -> dict[str, Any]:
    """The KServe v1 answer: ``predictions`` (one per instance), model name and version."""
    body = to_json(response)
    if "detections" in body:
        body["predictions"] = body.pop("detections")
    return body
