"""tritonclient 2.73 asks a visionyard server for a detector's typed outputs (run as a script:
tritonclient's protobuf copy cannot share a process with visionyard's stubs).

Usage: python triton_detection_check.py HTTP_HOST:PORT GRPC_HOST:PORT MODEL IMAGE...; sends the
images as one BYTES batch over HTTP (binary) and gRPC, and prints one JSON line per protocol:
``{"protocol", "version", "num_detections", "boxes", "scores", "classes", "detections"}``.
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


def ask(module: Any, url: str, model: str, images: list[bytes]) -> dict[str, Any]:
    client = module.InferenceServerClient(url)
    batch = np.array(images, dtype=np.object_)
    tensor = module.InferInput("image", [len(images)], "BYTES")
    if module is httpclient:
        tensor.set_data_from_numpy(batch, binary_data=True)
        wanted = [module.InferRequestedOutput(n, binary_data=True) for n in OUTPUTS]
    else:
        tensor.set_data_from_numpy(batch)
        wanted = [module.InferRequestedOutput(n) for n in OUTPUTS]
    result = client.infer(model, [tensor], outputs=wanted)
    response = result.get_response()
    version = response["model_version"] if isinstance(response, dict) else response.model_version
    return {
        "version": version,
        "num_detections": result.as_numpy("num_detections").tolist(),
        "boxes": result.as_numpy("detection_boxes").tolist(),
        "scores": result.as_numpy("detection_scores").tolist(),
        "classes": result.as_numpy("detection_classes").tolist(),
        "detections": [json.loads(item) for item in result.as_numpy("detections")],
    }


def main() -> None:
    http, grpc_target, model, *paths = sys.argv[1:]
    images = [Path(p).read_bytes() for p in paths]
    for name, module, url in (("http", httpclient, http), ("grpc", grpcclient, grpc_target)):
        print(json.dumps({"protocol": name, **ask(module, url, model, images)}))


if __name__ == "__main__":
    main()
