"""Benchmark: detection end to end (issue 14's quality and serving targets).

1. **Training**: ``visionyard train --task detection`` (the library call) on the synthetic COCO set
   (``--images`` at 64x64, 4 shapes, 1-4 objects each, seed 0; 20 % held out), timed from the
   call to the logged bundle. Reported: the best mAP@.5 and mAP@[.5:.95] on the held-out images,
   the epoch and elapsed seconds at which mAP@.5 first reached 0.8 (target: >= 0.8 in under 5
   minutes on this machine).
2. **INT8**: the trained detector quantised (static, calibrated on training images) and both
   evaluated on the held-out images: the mAP@[.5:.95] drop in points (target <= 1).
3. **Serving**: ``visionyard serve`` (a subprocess) of FP32 and INT8 bundles of two detectors:
   the one just trained (64x64 input: ~2 ms an image in-process, so a request's fixed cost in
   the server weighs heavily) and the same architecture on a ResNet-18 backbone at 320x320
   (random weights: speed does not depend on them; the size of a small production detector).
   The same images (the scenes as 640x480 JPEG) are sent by 32 closed-loop clients over REST
   ``:predict``, REST OIP binary (BYTES in, the ``detections`` JSON out) and gRPC (h2load when
   installed), against the best in-process pipeline (decode + letterbox + ORT + decoding and
   NMS) in the same round; median of ``--repeat`` rounds (target >= 0.9x, REST binary and gRPC,
   FP32 and INT8).

    .venv/bin/python bench/bench_detection.py [--images 600] [--epochs 30] [--seconds 5] \
        [--repeat 3] [--monitor on|off]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving_load import (  # noqa: E402
    binary_target,
    grpc_load,
    grpc_requests,
    http_client,
    http_request,
    inprocess_best,
    saturate,
)

CONCURRENCY = 32
OUT = ("detections",)
TARGET_MAP50, TARGET_SECONDS = 0.8, 300.0


def train_detector(root: Path, images: int, epochs: int) -> dict[str, Any]:
    from mlflow import MlflowClient

    from visionyard.data.synth import make_detection_set
    from visionyard.settings import Settings
    from visionyard.train import make_config, train

    data = make_detection_set(root / "coco", seed=0, n_images=images)
    settings = Settings(home=root / ".visionyard", tracking={"experiment": "bench-detection"})
    config = make_config(data=data, task="detection", arch="small_cnn", width=1.0, epochs=epochs,
                         seed=0, patience=None)  # fmt: skip
    began = time.perf_counter()
    result = train(config, settings)
    seconds = time.perf_counter() - began
    client = MlflowClient(settings.tracking_uri())
    history = sorted(client.get_metric_history(result.run_id, "val_map_50"), key=lambda m: m.step)
    spent = sorted(client.get_metric_history(result.run_id, "epoch_seconds"), key=lambda m: m.step)
    reached, elapsed = None, 0.0
    for mark, cost in zip(history, spent, strict=True):
        elapsed += cost.value
        if mark.value >= TARGET_MAP50:
            reached = (mark.step, elapsed)
            break
    return {"data": data, "bundle": result.bundle_path, "seconds": seconds, "reached": reached,
            "map_50": result.best_metrics["val_map_50"],
            "map_50_95": result.best_metrics["val_map_50_95"], "epoch": result.best_epoch,
            "config": config}  # fmt: skip


def int8_bundle(root: Path, trained: dict[str, Any]) -> tuple[Path, dict[str, float]]:
    from visionyard.bundle.store import load_bundle, write_bundle
    from visionyard.data.coco import CocoDataset
    from visionyard.data.manifest import read_dataset
    from visionyard.evaluate.detection import evaluate_detection
    from visionyard.export.quantize import CalibrationSet, quantize_int8
    from visionyard.export.reports import DataRef
    from visionyard.runtime.session import InferenceSession
    from visionyard.train.detection.data import split_images

    fp32 = load_bundle(trained["bundle"])
    dataset = read_dataset(trained["data"])
    assert isinstance(dataset, CocoDataset)
    train_images, val_images = split_images(dataset, trained["config"].val_fraction, 0)
    calib = tuple(image.path for image in train_images[:200])
    ref = DataRef(digest="bench", count=len(calib), source="train images", method="minmax")
    model = quantize_int8(fp32.model_path().read_bytes(), fp32.contract, CalibrationSet(calib, ref))
    int8 = write_bundle(root / "bundle-int8", model=model, contract=fp32.contract).path
    val = _subset(dataset, {i.id for i in val_images})
    maps = {}
    for name, path in (("fp32", trained["bundle"]), ("int8", int8)):
        report = evaluate_detection(InferenceSession.from_bundle(load_bundle(path)), val)
        maps[name] = report.map_50_95
        maps[f"{name}_50"] = report.map_50
    return int8, maps


def _subset(dataset: Any, ids: set[int]) -> Any:
    from dataclasses import replace

    images = tuple(i for i in dataset.images if i.id in ids)
    annotations = tuple(a for a in dataset.annotations if a.image_id in ids)
    return replace(dataset, images=images, annotations=annotations)


def scenes(data: Path, count: int = 16) -> list[bytes]:
    from PIL import Image

    out = []
    for path in sorted((data / "images").glob("*.png"))[:count]:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((640, 480)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def resnet_bundles(root: Path, images: list[bytes]) -> dict[str, Path]:
    """FP32 and INT8 bundles of the detector on a ResNet-18 backbone at 320x320 (random)."""
    import torch

    from visionyard.bundle.store import write_bundle
    from visionyard.contract.schema import VisionContract
    from visionyard.export import export_torch
    from visionyard.export.quantize import CalibrationSet, quantize_int8
    from visionyard.export.reports import DataRef
    from visionyard.train.detection.model import DecodedDetector, build_detector

    torch.manual_seed(0)
    labels = ["circle", "square", "triangle", "star"]
    contract = VisionContract.detection(labels, input_size=320)
    fp32 = export_torch(DecodedDetector(build_detector("resnet18", 4, 1.0, (320, 320))), contract)
    calib = []
    for i, data in enumerate(images):
        calib.append(root / f"calib{i}.jpg")
        calib[-1].write_bytes(data)
    ref = DataRef(digest="bench", count=len(calib), source="scenes", method="minmax")
    int8 = quantize_int8(fp32, contract, CalibrationSet(tuple(calib), ref))
    return {
        "r18-fp32": write_bundle(root / "r18-fp32", model=fp32, contract=contract).path,
        "r18-int8": write_bundle(root / "r18-int8", model=int8, contract=contract).path,
    }


def serving(
    bundles: dict[str, Path], images: list[bytes], seconds: float, repeat: int, monitor: str
) -> Any:
    from visionyard.serving.launch import serve_subprocess

    rounds: list[dict[str, float]] = []
    with contextlib.ExitStack() as stack:
        env = {"VISIONYARD_MONITOR__ENABLED": "true" if monitor == "on" else "false"}
        models = {k: str(v) for k, v in bundles.items()}
        urls = stack.enter_context(serve_subprocess(models, env=env))
        targets: dict[str, Any] = {}
        for variant in bundles:
            path = f"/v1/models/{variant}:predict"
            targets[f"predict-{variant}"] = http_client(
                urls.http_url, [http_request(urls.http_url, path, i) for i in images]
            )
            targets[f"binary-{variant}"] = binary_target(urls.http_url, variant, images, OUT)
            messages = grpc_requests(variant, images, OUT)
            targets[f"grpc-{variant}"] = grpc_load(
                stack, urls.grpc_target, urls.http_url, variant, messages
            )
        for index in range(repeat):
            measured: dict[str, float] = {}
            for variant, bundle in bundles.items():
                measured[f"inprocess-{variant}"] = inprocess_best(bundle, images, seconds)["rate"]
                for kind in ("predict", "binary", "grpc"):
                    target = targets[f"{kind}-{variant}"]
                    measured[f"{kind}-{variant}"] = saturate(target, CONCURRENCY, seconds)["rate"]
            rounds.append(measured)
            brief = ", ".join(f"{k} {v:.0f}" for k, v in measured.items())
            print(f"round {index + 1}/{repeat}: {brief} images/s", flush=True)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--monitor",
        choices=("on", "off"),
        default="on",
        help="the server's monitoring (drift features of every image)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vy-bench-det-") as tmp:
        root = Path(tmp)
        trained = train_detector(root, args.images, args.epochs)
        print(f"trained {args.epochs} epochs on {args.images} images in {trained['seconds']:.0f} s:"
              f" best mAP@.5 {trained['map_50']:.3f}, mAP@[.5:.95] {trained['map_50_95']:.3f}"
              f" (epoch {trained['epoch']})", flush=True)  # fmt: skip
        int8, maps = int8_bundle(root, trained)
        images = scenes(trained["data"])
        bundles = {"fp32": trained["bundle"], "int8": int8, **resnet_bundles(root, images)}
        rounds = serving(bundles, images, args.seconds, args.repeat, args.monitor)
    report(args, trained, maps, rounds)


def report(args: argparse.Namespace, trained: dict[str, Any], maps: dict[str, float],
           rounds: list[dict[str, float]]) -> None:  # fmt: skip
    print(f"\n== detection bench ({time.strftime('%Y-%m-%d')}) ==")
    reached = trained["reached"]
    when = (f"epoch {reached[0]} after {reached[1]:.0f} s of epochs" if reached
            else f"never within {args.epochs} epochs")  # fmt: skip
    met = reached is not None and reached[1] <= TARGET_SECONDS
    print(f"training: mAP@.5 >= {TARGET_MAP50} at {when}; whole run {trained['seconds']:.0f} s;"
          f" best mAP@.5 {trained['map_50']:.3f}, mAP@[.5:.95] {trained['map_50_95']:.3f}"
          f" -> {'met' if met else 'NOT met'}")  # fmt: skip
    drop = 100 * (maps["fp32"] - maps["int8"])
    print(f"INT8: mAP@[.5:.95] {maps['fp32']:.4f} -> {maps['int8']:.4f} ({drop:+.2f} points drop;"
          f" mAP@.5 {maps['fp32_50']:.4f} -> {maps['int8_50']:.4f})"
          f" -> {'met' if drop <= 1.0 else 'NOT met'} (<= 1 point)")  # fmt: skip
    print(
        f"serving (monitoring {args.monitor}), {CONCURRENCY} clients, median of {len(rounds)}"
        " rounds (images/s; ratio to"
        " the in-process best of the same round):"
    )
    for variant in ("fp32", "int8", "r18-fp32", "r18-int8"):
        base = statistics.median(r[f"inprocess-{variant}"] for r in rounds)
        cells = [f"in-process {base:.0f}"]
        for kind in ("predict", "binary", "grpc"):
            ratios = [r[f"{kind}-{variant}"] / r[f"inprocess-{variant}"] for r in rounds]
            rate = statistics.median(r[f"{kind}-{variant}"] for r in rounds)
            cells.append(f"{kind} {rate:.0f} = {statistics.median(ratios):.2f}x")
        print(f"  {variant}: " + ", ".join(cells))
    print("(fp32/int8: the trained 64x64 detector; r18-*: ResNet-18 backbone at 320x320)")
    print("target: REST binary and gRPC >= 0.9x in-process, FP32 and INT8")


if __name__ == "__main__":
    main()
