"""Benchmark: visionyard serve vs the in-process pipeline, a minimal FastAPI server, mlflow serve.

ResNet-18-style classifier (random weights: speed does not depend on them), 224x224 centre crop,
real JPEG photos re-encoded at 640x480 (the photos that ship with scikit-learn and matplotlib),
closed-loop clients on this machine. Prints, in one run and side by side:

- images/s at saturation: best in-process pipeline (decode + preprocess + ORT) FP32 and INT8,
  ``visionyard serve`` FP32 and INT8 (ratio >= 0.9x in-process), a minimal hand-written FastAPI
  server (visionyard >= 1.25x) and stock ``mlflow models serve`` of the ONNX flavour, which
  takes JSON tensors (visionyard >= 10x);
- p50/p99 latency at half saturation (open loop) and batch-1 idle;
- hot swap under load: time from the admin call to the first new-version answer, failures;
- cold start (process start to both protocols ready); RSS after 1/10 and all of the soak.

    .venv/bin/python bench/bench_serving.py [--seconds 15] [--soak 600] [--no-mlflow]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving_load import (  # noqa: E402
    closed_loop,
    idle_latency,
    inprocess_best,
    open_loop,
    rss_mb,
)

CONCURRENCY = 8


def photos() -> list[bytes]:
    import matplotlib
    import sklearn

    sources = [
        Path(sklearn.__file__).parent / "datasets/images/china.jpg",
        Path(sklearn.__file__).parent / "datasets/images/flower.jpg",
        Path(matplotlib.__file__).parent / "mpl-data/sample_data/grace_hopper.jpg",
    ]
    out = []
    for path in sources:
        image = Image.open(path).convert("RGB").resize((640, 480))
        for flip in (False, True):
            buffer = io.BytesIO()
            (image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else image).save(
                buffer, "JPEG", quality=90
            )
            out.append(buffer.getvalue())
    return out


def build_bundles(root: Path, images: list[bytes]) -> dict[str, Path]:
    import torch

    from visionyard.bundle.store import write_bundle
    from visionyard.contract.schema import VisionContract
    from visionyard.export import export_torch
    from visionyard.export.quantize import CalibrationSet, quantize_int8
    from visionyard.export.reports import DataRef
    from visionyard.train.models import resnet18

    torch.manual_seed(0)
    contract = VisionContract.classification([f"class{i}" for i in range(10)], input_size=224)
    fp32 = export_torch(resnet18(10), contract)
    calib = []
    for i, data in enumerate(images):
        calib.append(root / f"calib{i}.jpg")
        calib[-1].write_bytes(data)
    ref = DataRef(digest="bench", count=len(calib), source="photos", method="minmax")
    int8 = quantize_int8(fp32, contract, CalibrationSet(tuple(calib), ref))
    (root / "fp32.onnx").write_bytes(fp32)
    return {
        "fp32": write_bundle(root / "bundle-fp32", model=fp32, contract=contract).path,
        "int8": write_bundle(root / "bundle-int8", model=int8, contract=contract).path,
        "fp32-v2": write_bundle(root / "bundle-v2", model=fp32, contract=contract).path,
    }


def predict_call(url: str, path: str, images: list[bytes]) -> Callable[[httpx.Client, int], bool]:
    def call(client: httpx.Client, i: int) -> bool:
        response = client.post(url + path, content=images[i % len(images)])
        return response.status_code == 200

    return call


def bench_visionyard(
    bundles: dict[str, Path], images: list[bytes], seconds: float
) -> dict[str, Any]:
    from visionyard.serving.launch import serve_subprocess

    results: dict[str, Any] = {}
    started = time.perf_counter()
    with serve_subprocess({"fp32": str(bundles["fp32"]), "int8": str(bundles["int8"])}) as urls:
        results["cold_start_s"] = time.perf_counter() - started
        for variant in ("fp32", "int8"):
            call = predict_call(urls.http_url, f"/v1/models/{variant}:predict", images)
            closed_loop(call, 2, 2.0)  # warm-up
            sat = closed_loop(call, CONCURRENCY, seconds)
            half = open_loop(call, sat["rate"] / 2, seconds)
            results[variant] = {"sat": sat, "half": half, "idle": idle_latency(call, 60)}
        results["pid"] = urls.pid
    return results


def bench_minimal(model: Path, images: list[bytes], seconds: float) -> dict[str, Any]:
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, str(BENCH / "serving_minimal.py"), str(model), str(port)],
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/docs")
        call = predict_call(url, "/predict", images)
        closed_loop(call, 2, 2.0)
        return closed_loop(call, CONCURRENCY, seconds)
    finally:
        child.terminate()
        child.wait(20)


def bench_mlflow(model: Path, images: list[bytes], seconds: float, root: Path) -> dict[str, Any]:
    """Stock ``mlflow models serve`` of the ONNX flavour: clients send JSON tensors."""
    import mlflow
    import onnx

    from visionyard.contract.preprocess import preprocess_batch
    from visionyard.contract.schema import VisionContract

    saved = root / "mlflow-model"
    mlflow.onnx.save_model(onnx.load(str(model)), str(saved))
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            str(saved),
            "--env-manager",
            "local",
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    contract = VisionContract.classification([f"class{i}" for i in range(10)], input_size=224)

    def call(client: httpx.Client, i: int) -> bool:
        tensor = preprocess_batch([images[i % len(images)]], contract).tensor
        body = {"inputs": {"input": tensor.tolist()}}
        return client.post(f"http://127.0.0.1:{port}/invocations", json=body).status_code == 200

    try:
        _wait_http(f"http://127.0.0.1:{port}/ping", 180)
        closed_loop(call, 2, 2.0)
        return closed_loop(call, CONCURRENCY, seconds)
    finally:
        os.killpg(child.pid, 15)
        child.wait(30)


def bench_swap(bundles: dict[str, Path], images: list[bytes]) -> dict[str, Any]:
    from visionyard.serving.app import running_server
    from visionyard.serving.sources import Resolved
    from visionyard.settings import Settings

    class Source:
        reference = "bench@production"
        target = Resolved("1", bundles["fp32"])

        def resolve(self) -> Resolved:
            return self.target

    source = Source()
    settings = Settings(
        serving={"http_port": 0, "grpc_port": 0, "admin_token": "t", "poll_interval_s": 3600}
    )
    with running_server(settings, {"m": source}) as srv:
        seen: Counter[str] = Counter()
        stop, first_new = threading.Event(), []

        def call(client: httpx.Client, i: int) -> bool:
            response = client.post(srv.http_url + "/v1/models/m:predict", content=images[i % 6])
            version = response.json().get("model_version") if response.status_code == 200 else None
            seen[version or "failed"] += 1
            if version == "2" and not first_new:
                first_new.append(time.perf_counter())
            return response.status_code == 200

        loader = threading.Thread(target=closed_loop, args=(call, 4, 6.0, stop))
        loader.start()
        time.sleep(2.0)
        source.target = Resolved("2", bundles["fp32-v2"])
        called = time.perf_counter()
        httpx.post(
            srv.http_url + "/v2/repository/models/m/load",
            headers={"Authorization": "Bearer t"},
            timeout=60,
        )
        loader.join()
    return {
        "to_first_new_s": (first_new[0] - called) if first_new else None,
        "failed": seen["failed"],
        "answers": dict(seen),
    }


def soak(bundles: dict[str, Path], images: list[bytes], seconds: float) -> dict[str, float]:
    from visionyard.serving.launch import serve_subprocess

    with serve_subprocess({"fp32": str(bundles["fp32"])}) as urls:
        call = predict_call(urls.http_url, "/v1/models/fp32:predict", images)
        stop = threading.Event()
        loader = threading.Thread(target=closed_loop, args=(call, CONCURRENCY, seconds, stop))
        loader.start()
        time.sleep(seconds / 10)
        early = rss_mb(urls.pid or 0)
        loader.join()
        late = rss_mb(urls.pid or 0)
    return {"early_mb": early, "late_mb": late, "growth": late / early - 1}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


def report(results: dict[str, Any]) -> None:
    inproc, vy = results["inprocess"], results["visionyard"]
    print(f"\n== throughput at saturation (images/s, closed loop, {CONCURRENCY} clients) ==")
    for variant in ("fp32", "int8"):
        served, best = vy[variant]["sat"]["rate"], inproc[variant]["rate"]
        print(
            f"{variant}: in-process best {best:7.1f} ({inproc[variant]['config']})   "
            f"visionyard {served:7.1f}   ratio {served / best:.2f}x (target >= 0.90)"
        )
    fp32 = vy["fp32"]["sat"]["rate"]
    minimal = results["minimal"]["rate"]
    print(
        f"minimal FastAPI {minimal:7.1f}   visionyard/minimal {fp32 / minimal:.2f}x "
        "(target >= 1.25)"
    )
    if results.get("mlflow"):
        ml = results["mlflow"]["rate"]
        print(f"mlflow models serve {ml:7.1f}   visionyard/mlflow {fp32 / ml:.1f}x (target >= 10)")
    print("\n== latency (ms) ==")
    for variant in ("fp32", "int8"):
        half, idle = vy[variant]["half"], vy[variant]["idle"]
        print(
            f"{variant}: half saturation ({half['rate']:.1f}/s) p50 {half['p50']:.1f} "
            f"p99 {half['p99']:.1f} | batch-1 idle p50 {idle['p50']:.1f} p99 {idle['p99']:.1f}"
        )
    swap = results["swap"]
    print(
        f"\n== hot swap under load == first new-version answer after "
        f"{swap['to_first_new_s']:.3f}s, failed requests {swap['failed']}, "
        f"answers {swap['answers']}"
    )
    print(f"cold start (process start -> ready): {vy['cold_start_s']:.2f}s")
    mem = results["soak"]
    print(
        f"memory: RSS {mem['early_mb']:.1f} MB at 1/10 of the soak, {mem['late_mb']:.1f} MB at "
        f"the end ({mem['growth'] * 100:+.1f}%, target within 5%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per throughput measurement")
    parser.add_argument("--soak", type=float, default=600.0, help="soak duration (10 min)")
    parser.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    args = parser.parse_args()
    images = photos()
    with tempfile.TemporaryDirectory(prefix="vy-bench-") as tmp:
        root = Path(tmp)
        bundles = build_bundles(root, images)
        results: dict[str, Any] = {
            "inprocess": {
                v: inprocess_best(bundles[v], images, args.seconds) for v in ("fp32", "int8")
            },
        }
        results["visionyard"] = bench_visionyard(bundles, images, args.seconds)
        results["minimal"] = bench_minimal(root / "fp32.onnx", images, args.seconds)
        if not args.no_mlflow:
            results["mlflow"] = bench_mlflow(root / "fp32.onnx", images, args.seconds, root)
        results["swap"] = bench_swap(bundles, images)
        results["soak"] = soak(bundles, images, args.soak)
        report(results)


if __name__ == "__main__":
    main()
