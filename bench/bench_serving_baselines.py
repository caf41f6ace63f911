"""The servers bench_serving.py compares against: a minimal FastAPI server and mlflow serve.

Each is started as a child process in its own session and yields ``(url, path, bodies)``: the
URL, the endpoint and one prebuilt request body per photo, so the load generator sends the same
bytes over and over and spends (almost) no CPU of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent


@contextlib.contextmanager
def minimal_server(
    model: Path, images: list[bytes], form: str = "inline"
) -> Iterator[tuple[str, str, list[bytes]]]:
    """``serving_minimal.py``: a JPEG (raw body, or a multipart upload) in, top-1 JSON out."""
    port = free_port()
    command = [sys.executable, str(BENCH / "serving_minimal.py"), str(model), str(port), form]
    with _child(command) as _:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/docs")
        if form == "upload":
            yield url, "/upload", [multipart(image) for image in images]
        else:
            yield url, "/predict", images


BOUNDARY = "vy-bench-boundary"


def multipart(image: bytes) -> bytes:
    """One file field ``file``, as browsers and ``curl -F file=@photo.jpg`` send it."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def plain_loop(model: Path, photos: list[Path], seconds: float) -> dict[str, float]:
    """The minimal server's own code in a single-threaded loop, in a process of its own."""
    command = [sys.executable, str(BENCH / "serving_minimal.py"), str(model), "loop"]
    command += [str(seconds), *map(str, photos)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {"rate": float(output.split()[-1])}


@contextlib.contextmanager
def mlflow_server(
    model: Path, images: list[bytes], root: Path
) -> Iterator[tuple[str, str, list[bytes]]]:
    """Stock ``mlflow models serve`` of the ONNX flavour: it takes JSON tensors, not JPEG.

    The bodies are the photos preprocessed by the same contract and JSON-encoded ONCE here (what
    a user of mlflow serve must do per request; that client-side cost is left out, in mlflow's
    favour, and reported separately as ``encode_ms``).
    """
    import mlflow
    import onnx

    saved = root / "mlflow-model"
    if not saved.exists():
        mlflow.onnx.save_model(onnx.load(str(model)), str(saved))
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(saved)]
    command += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
    with _child(command, env) as _:
        bodies = mlflow_bodies(images)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/ping", 180)
        yield url, "/invocations", bodies


def mlflow_bodies(images: list[bytes]) -> list[bytes]:
    from visionyard.contract.preprocess import preprocess_batch
    from visionyard.contract.schema import VisionContract

    contract = VisionContract.classification([f"class{i}" for i in range(10)], input_size=224)
    bodies = []
    for data in images:
        tensor = preprocess_batch([data], contract).tensor
        bodies.append(json.dumps({"inputs": {"input": tensor.tolist()}}).encode())
    return bodies


def mlflow_encode_ms(images: list[bytes]) -> float:
    """Client-side cost of one mlflow request body (decode, preprocess, JSON), per image."""
    started = time.perf_counter()
    mlflow_bodies(images)
    return (time.perf_counter() - started) / len(images) * 1000


@contextlib.contextmanager
def _child(command: list[str], env: dict[str, str] | None = None) -> Iterator[int]:
    child = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        yield child.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up within {timeout}s")
