"""Run tritonclient 2.73 (a real third-party OIP v2 client) against a visionyard server.

Run as a script in its own process: tritonclient registers its own copy of the
``inference.*`` protobuf messages, which cannot share a process with visionyard's stubs.
Usage: python triton_client_check.py HTTP_HOST:PORT GRPC_HOST:PORT [ADMIN_TOKEN]; prints one
line per check. With the admin token, Triton's extensions are checked too (model configuration,
statistics, the model repository, streaming), with their bad input.
"""

from __future__ import annotations

import io
import queue
import sys
from collections.abc import Callable
from typing import Any

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


def _refused(call: Callable[[], object]) -> str:
    """The status of the error ``call`` raises (HTTP: the status code; gRPC: the code)."""
    try:
        call()
    except Exception as exc:  # tritonclient's InferenceServerException
        return str(exc.status())  # type: ignore[attr-defined]
    raise AssertionError("expected an error")


def _config(http: Any, grpc: Any) -> None:
    for config in (http.get_model_config("colour"), grpc.get_model_config("colour", as_json=True)):
        config = config.get("config", config)
        assert config["max_batch_size"] == 64, config
        assert [i["name"] for i in config["input"]] == ["input", "image"], config
        assert config["input"][0]["dims"] in ([3, 8, 8], ["3", "8", "8"]), config
        assert config["input"][0]["format"] == "FORMAT_NCHW", config
        assert config["input"][1]["data_type"] == "TYPE_STRING", config
        assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) >= 0, config
        assert config["instance_group"][0]["kind"] == "KIND_CPU", config
        assert int(config["instance_group"][0]["count"]) >= 1, config
    print("ok config http+grpc")


def _stats(http: Any, grpc: Any) -> None:
    both = (http.get_inference_statistics("colour"), grpc.get_inference_statistics(as_json=True))
    for stats in both:
        (row,) = stats["model_stats"]
        assert row["name"] == "colour", row
        # both protocols' requests: http fp32 x2, http images, grpc fp32 and images
        assert int(row["inference_stats"]["success"]["count"]) >= 5, row
        assert int(row["inference_count"]) >= 10, row
        assert int(row["execution_count"]) >= 1, row
        assert int(row["inference_stats"]["compute_infer"]["ns"]) > 0, row
    assert _refused(lambda: http.get_inference_statistics("ghost")) == "404"
    assert _refused(lambda: grpc.get_inference_statistics("ghost")) == "StatusCode.NOT_FOUND"
    print("ok stats http+grpc")


def _repository(http: Any, grpc: Any, token: str) -> None:
    admin = {"authorization": f"Bearer {token}"}
    wrong = {"authorization": "Bearer wrong"}
    assert http.get_model_repository_index(headers=admin)[0]["state"] == "READY"
    index = grpc.get_model_repository_index(headers=admin, as_json=True)["models"]
    assert [(m["name"], m["state"]) for m in index] == [("colour", "READY")], index
    assert _refused(lambda: http.load_model("colour")) == "401"
    assert _refused(lambda: http.unload_model("colour", headers=wrong)) == "401"
    assert _refused(lambda: grpc.load_model("colour")) == "StatusCode.UNAUTHENTICATED"
    assert _refused(lambda: grpc.unload_model("colour", headers=wrong)) == (
        "StatusCode.UNAUTHENTICATED"
    )
    assert _refused(lambda: http.load_model("ghost", headers=admin)) == "404"
    assert _refused(lambda: grpc.load_model("ghost", headers=admin)) == "StatusCode.NOT_FOUND"
    grpc.unload_model("colour", headers=admin)
    assert not http.is_model_ready("colour")
    assert not grpc.is_model_ready("colour")
    http.load_model("colour", headers=admin)
    assert grpc.is_model_ready("colour")
    http.unload_model("colour", headers=admin)
    grpc.load_model("colour", headers=admin)
    assert http.is_model_ready("colour")
    print("ok repository http+grpc")


def _stream(grpc: Any) -> None:
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    grpc.start_stream(callback=lambda result, error: answers.put((result, error)))
    bad = grpcclient.InferInput("nope", [1], "FP32")
    bad.set_data_from_numpy(np.zeros(1, np.float32))
    grpc.async_stream_infer("colour", [bad], request_id="bad-input")
    grpc.async_stream_infer("ghost", [bad], request_id="bad-model")
    wrong = grpcclient.InferInput("image", [1], "BYTES")
    wrong.set_data_from_numpy(np.array([b"not an image"], dtype=object))
    grpc.async_stream_infer("colour", [wrong], request_id="bad-image")
    for i, colour in enumerate(("red", "blue")):
        good = grpcclient.InferInput("image", [1], "BYTES")
        good.set_data_from_numpy(np.array([_jpeg(COLOURS[colour])], dtype=object))
        out = grpcclient.InferRequestedOutput("top_labels")
        grpc.async_stream_infer("colour", [good], request_id=f"good-{i}", outputs=[out])
    grpc.stop_stream()
    replies = [answers.get(timeout=30) for _ in range(5)]
    errors = sorted(str(e) for _, e in replies if e is not None)
    assert len(errors) == 3, errors
    assert any("not found" in e for e in errors), errors
    labels = {
        r.get_response().id: r.as_numpy("top_labels")[0][0]  # type: ignore[attr-defined]
        for r, _ in replies
        if r is not None
    }
    assert labels == {"good-0": b"red", "good-1": b"blue"}, labels
    print("ok stream malformed then good")


def extensions(http_url: str, grpc_url: str, token: str) -> None:
    http = httpclient.InferenceServerClient(http_url)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    extensions = grpc.get_server_metadata().extensions
    assert {"model_configuration", "statistics", "model_repository"} <= set(extensions)
    assert not http.is_model_ready("ghost")
    assert _refused(lambda: grpc.is_model_ready("ghost")) == "StatusCode.NOT_FOUND"
    _config(http, grpc)
    _stats(http, grpc)
    _stream(grpc)
    _repository(http, grpc, token)


def main() -> None:
    http_url, grpc_url = sys.argv[1], sys.argv[2]
    for binary in (False, True):
        check(httpclient, http_url, binary)
    check(grpcclient, grpc_url, True)
    if len(sys.argv) > 3:
        extensions(http_url, grpc_url, sys.argv[3])
    print("all ok")


if __name__ == "__main__":
    main()
