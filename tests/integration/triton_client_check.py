"""Run tritonclient 2.73 (a real third-party OIP v2 client) against a visionyard server.

Run as a script in its own process: tritonclient registers its own copy of the
``inference.*`` protobuf messages, which cannot share a process with visionyard's stubs.
Usage: python triton_client_check.py HTTP_HOST:PORT GRPC_HOST:PORT; prints one line per check.
"""

from __future__ import annotations

import io
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255)}


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def _tensor() -> np.ndarray:
    array = np.zeros((2, 3, 8, 8), np.float32)
    array[0, 0] = 1.0
    array[1, 2] = 1.0
    return array


def check(module: object, url: str, binary: bool) -> None:
    kind = module.__name__.split(".")[-1]  # type: ignore[attr-defined]
    client = module.InferenceServerClient(url)  # type: ignore[attr-defined]
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("colour")
    meta = client.get_model_metadata("colour")
    names = [
        i["name"] if isinstance(i, dict) else i.name
        for i in (meta["inputs"] if isinstance(meta, dict) else meta.inputs)
    ]
    assert names == ["input", "image"], names
    server = client.get_server_metadata()
    assert (server["name"] if isinstance(server, dict) else server.name) == "visionyard"
    print(f"ok {kind} health+metadata")
    _fp32(module, client, binary, kind)
    _images(module, client, binary, kind)


def _fp32(module: object, client: object, binary: bool, kind: str) -> None:
    tensor = _tensor()
    inp = module.InferInput("input", list(tensor.shape), "FP32")  # type: ignore[attr-defined]
    extra = {"binary_data": binary} if kind == "http" else {}
    inp.set_data_from_numpy(tensor, **extra)
    out = module.InferRequestedOutput("logits", **({"binary_data": binary} if extra else {}))  # type: ignore[attr-defined]
    result = client.infer("colour", [inp], outputs=[out])  # type: ignore[attr-defined]
    logits = result.as_numpy("logits")
    assert logits.shape == (2, 5), logits
    assert logits.argmax(1).tolist() == [0, 2], logits
    print(f"ok {kind} fp32 binary={binary}")


def _images(module: object, client: object, binary: bool, kind: str) -> None:
    images = np.array([_jpeg(COLOURS["red"]), _jpeg(COLOURS["blue"])], dtype=object)
    inp = module.InferInput("image", [2], "BYTES")  # type: ignore[attr-defined]
    extra = {"binary_data": binary} if kind == "http" else {}
    if kind == "http" and not binary:
        return  # BYTES as JSON strings cannot carry arbitrary image bytes
    inp.set_data_from_numpy(images, **extra)
    out = module.InferRequestedOutput("logits", class_count=1, **extra)  # type: ignore[attr-defined]
    labels = module.InferRequestedOutput("top_labels", **extra)  # type: ignore[attr-defined]
    result = client.infer("colour", [inp], outputs=[out, labels])  # type: ignore[attr-defined]
    strings = [s.decode() for s in result.as_numpy("logits").reshape(-1)]
    assert strings[0].endswith(":0:red"), strings
    assert strings[1].endswith(":2:blue"), strings
    top = result.as_numpy("top_labels")
    assert top[0][0] == b"red", top
    print(f"ok {kind} images binary={binary}")


def main() -> None:
    http_url, grpc_url = sys.argv[1], sys.argv[2]
    for binary in (False, True):
        check(httpclient, http_url, binary)
    check(grpcclient, grpc_url, True)
    print("all ok")


if __name__ == "__main__":
    main()
