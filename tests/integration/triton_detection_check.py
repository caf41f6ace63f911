"""tritonclient 2.73 asks a visionyard server for a detector's typed outputs (run as a script:
tritonclient's protobuf copy cannot share a process with visionyard's stubs).

Usage: python triton_detection_check.py HTTP_HOST:PORT GRPC_HOST:PORT MODEL [--json-only]
IMAGE...; sends the images as one BYTES batch over HTTP (binary) and gRPC, and prints one JSON
line per protocol: ``{"protocol", "version", "parameters", "detections"}`` and, unless
``--json-only`` (a pipeline answers ``detections`` alone), ``"num_detections", "boxes",
"scores", "classes"``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes",
           "detections")  # fmt: skip


def ask(module: Any, url: str, model: str, images: list[bytes], names: tuple[str, ...]) -> dict[
    str, Any
]:  # fmt: skip
    client = module.InferenceServerClient(url)
    batch = np.array(images, dtype=np.object_)
    tensor = module.InferInput("image", [len(images)], "BYTES")
    if module is httpclient:
        tensor.set_data_from_numpy(batch, binary_data=True)
        wanted = [module.InferRequestedOutput(n, binary_data=True) for n in names]
    else:
        tensor.set_data_from_numpy(batch)
        wanted = [module.InferRequestedOutput(n) for n in names]
    result = client.infer(model, [tensor], outputs=wanted)
    response = result.get_response()
    if isinstance(response, dict):
        version, parameters = response["model_version"], response.get("parameters", {})
    else:
        version = response.model_version
        parameters = {k: v.string_param for k, v in response.parameters.items()}
    answer = {
        "version": version,
        "parameters": parameters,
        "detections": [json.loads(item) for item in result.as_numpy("detections")],
    }
    if "num_detections" in names:
        answer.update(
            num_detections=result.as_numpy("num_detections").tolist(),
            boxes=result.as_numpy("detection_boxes").tolist(),
            scores=result.as_numpy("detection_scores").tolist(),
            classes=result.as_numpy("detection_classes").tolist(),
        )
    return answer


def main() -> None:
    http, grpc_target, model, *paths = sys.argv[1:]
    names = OUTPUTS
    if paths and paths[0] == "--json-only":
        names, paths = ("detections",), paths[1:]
    images = [Path(p).read_bytes() for p in paths]
    for name, module, url in (("http", httpclient, http), ("grpc", grpcclient, grpc_target)):
        print(json.dumps({"protocol": name, **ask(module, url, model, images, names)}))


if __name__ == "__main__":
    main()
