"""``POST /v1/models/{name}:predict``: a raw image body or a multipart upload in, JSON out.

A convenience over the OIP infer call: the images become the ``image`` BYTES input and the
answer is the contract's decoding as plain JSON (``predictions`` per image for classifiers,
``detections`` per image for detectors, boxes in original image pixels).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from visionyard.contract.schema import ClassificationDecoding, VisionContract
from visionyard.errors import InvalidInputError, VisionyardError
from visionyard.serving.codec import json_number, object_array
from visionyard.serving.model import IMAGE_INPUT
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
