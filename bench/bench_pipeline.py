"""Benchmark: a detect -> crop -> classify pipeline served vs its two stages called in-process.

Two models with random weights (speed does not depend on them), registered, and a pipeline over
them registered and promoted (:mod:`visionyard.pipeline`):

- detector: the CenterNet-style detector of ``visionyard train --task detection`` on a ResNet-18
  backbone at ``--detector-size`` (320: a small production detector), run in full, whose
  answer is ``--crops`` fixed boxes (random weights would give thousands of boxes over any
  threshold; a fixed count makes both sides do the same, known work);
- classifier: the ResNet-18-style classifier at ``--classifier-size`` (96: crops are small).

The same images (synthetic COCO scenes as 640x480 JPEG) go through

- in-process, the stages one after the other as a user would call them: per image, decode by the
  detector's contract, ``InferenceSession.detect``, cut each box with the spec's padding, then
  ``InferenceSession.classify`` on the crops; the best of a few layouts (threads x ORT threads),
  measured in the same round as the server;
- ``visionyard serve`` (a subprocess) serving the pipeline by its registry alias, under 32
  closed-loop clients: REST ``:predict`` (JPEG body), REST OIP binary (BYTES in, ``detections``
  out) and gRPC (h2load when installed).

Median of ``--repeat`` rounds; target: served >= 0.9x in-process. The served answers are checked
against the in-process ones first (same labels per image).

    .venv/bin/python bench/bench_pipeline.py [--seconds 5] [--repeat 3] [--crops 8]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving_load import (  # noqa: E402
    binary_target,
    grpc_load,
    grpc_requests,
    http_client,
    http_request,
    run_threads,
    saturate,
)

CONCURRENCY = 32
OUT = ("detections",)
PADDING = 0.1


def build(root: Path, args: argparse.Namespace) -> tuple[Any, str, dict[str, Path]]:
    """Register detector, classifier and the pipeline; returns (settings, name, bundles)."""
    import torch

    from visionyard.bundle.store import write_bundle
    from visionyard.contract.schema import VisionContract
    from visionyard.export import export_torch
    from visionyard.pipeline.registry import register_pipeline
    from visionyard.registry import Registry
    from visionyard.settings import Settings
    from visionyard.tracking import start_run
    from visionyard.train.detection.model import DecodedDetector, build_detector
    from visionyard.train.models import resnet18

    FixedBoxes = fixed_boxes_module()  # noqa: N806
    torch.manual_seed(0)
    size = args.detector_size
    det_contract = VisionContract.detection(["a", "b", "c", "d"], input_size=size)
    inner = DecodedDetector(build_detector("resnet18", 4, 1.0, (size, size)))
    detector = export_torch(FixedBoxes(inner, size, args.crops), det_contract)
    cls_contract = VisionContract.classification(
        [f"class{i}" for i in range(10)], input_size=args.classifier_size, resize="resize"
    )
    classifier = export_torch(resnet18(10), cls_contract)
    bundles = {
        "detector": write_bundle(root / "det", model=detector, contract=det_contract).path,
        "classifier": write_bundle(root / "cls", model=classifier, contract=cls_contract).path,
    }
    settings = Settings(home=root / ".visionyard", tracking={"experiment": "bench-pipeline"})
    registry = Registry(settings)
    for role, path in bundles.items():
        with start_run(settings=settings, run_name=role) as run:
            run.log_bundle(path)
            registry.register(run.run_id, f"bench-{role}")
        registry.promote(f"bench-{role}", "1", "production")
    spec = root / "pipeline.yaml"
    spec.write_text(json.dumps({
        "pipeline": 1, "detector": "bench-detector@production",
        "classifier": "bench-classifier@production", "min_score": 0.0,
        "max_crops": args.crops, "crop": {"padding": PADDING, "min_size": 1},
    }))  # fmt: skip
    register_pipeline(registry, spec, "bench-pipeline")
    registry.promote("bench-pipeline", "1", "production")
    return settings, "bench-pipeline", bundles


def fixed_boxes_module() -> Any:
    import torch

    class FixedBoxes(torch.nn.Module):
        """The whole detector runs (its cost is real), but its answer is ``crops`` fixed boxes
        on a grid, one class each: random weights would give thousands of boxes over any
        threshold, and both sides must do the same, known work."""

        def __init__(self, detector: torch.nn.Module, size: int, crops: int) -> None:
            super().__init__()
            self.detector = detector
            side = int(np.ceil(np.sqrt(crops)))
            cell = size / side
            boxes = [((i % side) * cell + 4, (i // side) * cell + 4,
                      (i % side + 1) * cell - 4, (i // side + 1) * cell - 4)
                     for i in range(crops)]  # fmt: skip
            scores = np.full((crops, 4), 0.01, np.float32)
            scores[np.arange(crops), np.arange(crops) % 4] = 0.9 - 0.01 * np.arange(crops)
            self.register_buffer("boxes", torch.tensor(boxes, dtype=torch.float32)[None])
            self.register_buffer("scores", torch.from_numpy(scores)[None])

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            boxes, scores = self.detector(x)
            signal = torch.tanh(scores.mean(dim=(1, 2), keepdim=True) + boxes.mean()) * 1e-6
            n = x.shape[0]
            return self.boxes.expand(n, -1, -1) + signal, self.scores.expand(n, -1, -1) + signal

    return FixedBoxes


def scenes(root: Path, count: int) -> list[bytes]:
    from PIL import Image

    from visionyard.data.synth import make_detection_set

    data = make_detection_set(root / "coco", seed=0, n_images=count)
    out = []
    for path in sorted((data / "images").glob("*.png"))[:count]:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((640, 480)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def two_stages(bundles: dict[str, Path], intra: int) -> Any:
    """The in-process baseline: one image through both stages, one after the other."""
    from visionyard.contract.preprocess import decode_for_contract
    from visionyard.pipeline.runner import crop_box
    from visionyard.pipeline.spec import CropSpec
    from visionyard.runtime.session import InferenceSession

    detector = InferenceSession.open(bundles["detector"], intra_op_threads=intra)
    classifier = InferenceSession.open(bundles["classifier"], intra_op_threads=intra)
    crop = CropSpec(padding=PADDING, min_size=1)

    def run(data: bytes) -> list[str]:
        image = decode_for_contract(data, detector.contract)
        (boxes,) = detector.detect([image])
        rects = [crop_box(d.box, image.width, image.height, crop) for d in boxes]
        crops = [image.crop(r) for r in rects if r is not None]
        return [row[0].label for row in classifier.classify(crops)] if crops else []

    return run


def inprocess_best(bundles: dict[str, Path], images: list[bytes], seconds: float) -> float:
    """Images/s of the two stages in-process: the best of 1 thread x 2 ORT threads and
    2 threads x 1 ORT thread (each thread takes one image at a time)."""
    rates = [_rate(two_stages(bundles, intra), images, workers, seconds / 2)
             for workers, intra in ((1, 2), (2, 1))]  # fmt: skip
    return max(rates)


def _rate(run: Any, images: list[bytes], workers: int, seconds: float) -> float:
    counts = [0] * workers
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        i = index
        while time.perf_counter() < deadline:
            run(images[i % len(images)])
            counts[index] += 1
            i += workers

    started = time.perf_counter()
    run_threads(worker, workers)
    return sum(counts) / (time.perf_counter() - started)


def check_answers(url: str, model: str, bundles: dict[str, Path], images: list[bytes]) -> int:
    """Served labels == in-process labels, image by image; returns the boxes compared."""
    import httpx

    run, compared = two_stages(bundles, 1), 0
    for image in images:
        body = httpx.post(f"{url}/v1/models/{model}:predict", content=image, timeout=60).json()
        served = [d["label"] for d in body["detections"][0]]
        expected = run(image)
        if served != expected:
            raise SystemExit(f"served {served} != in-process {expected}: not the same work")
        compared += len(served)
    return compared


def serving(args: argparse.Namespace, root: Path) -> tuple[list[dict[str, float]], int]:
    from visionyard.serving.launch import serve_subprocess

    settings, name, bundles = build(root, args)
    images = scenes(root, args.images)
    flags = ["--home", str(settings.home), "--tracking-uri", settings.tracking_uri()]
    rounds: list[dict[str, float]] = []
    with contextlib.ExitStack() as stack:
        urls = stack.enter_context(serve_subprocess({"pipe": f"{name}@production"}, args=flags))
        compared = check_answers(urls.http_url, "pipe", bundles, images)
        targets: dict[str, Any] = {
            "predict": http_client(urls.http_url, [
                http_request(urls.http_url, "/v1/models/pipe:predict", i) for i in images
            ]),
            "binary": binary_target(urls.http_url, "pipe", images, OUT),
        }  # fmt: skip
        messages = grpc_requests("pipe", images)
        targets["grpc"] = grpc_load(stack, urls.grpc_target, urls.http_url, "pipe", messages)
        for index in range(args.repeat):
            measured = {"inprocess": inprocess_best(bundles, images, args.seconds)}
            for kind, target in targets.items():
                measured[kind] = saturate(target, CONCURRENCY, args.seconds)["rate"]
            rounds.append(measured)
            brief = ", ".join(f"{k} {v:.1f}" for k, v in measured.items())
            print(f"round {index + 1}/{args.repeat}: {brief} images/s", flush=True)
    return rounds, compared


def report(args: argparse.Namespace, rounds: list[dict[str, float]], compared: int) -> None:
    print(f"\n== pipeline bench ({time.strftime('%Y-%m-%d')}) ==")
    print(f"detector ResNet-18 {args.detector_size}px, {args.crops} crops an image -> classifier "
          f"ResNet-18 {args.classifier_size}px; {args.images} JPEG scenes 640x480; served labels "
          f"= in-process labels on {compared} boxes")  # fmt: skip
    base = statistics.median(r["inprocess"] for r in rounds)
    cells = [f"in-process (two stages, best layout) {base:.1f}"]
    for kind in ("predict", "binary", "grpc"):
        ratio = statistics.median(r[kind] / r["inprocess"] for r in rounds)
        rate = statistics.median(r[kind] for r in rounds)
        cells.append(f"{kind} {rate:.1f} = {ratio:.2f}x {'met' if ratio >= 0.9 else 'NOT met'}")
    print(f"{CONCURRENCY} clients, median of {len(rounds)} rounds (images/s; ratio to the "
          "in-process stages of the same round):\n  " + "\n  ".join(cells))  # fmt: skip
    print("target: served >= 0.9x in-process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--crops", type=int, default=8)
    parser.add_argument("--detector-size", type=int, default=320)
    parser.add_argument("--classifier-size", type=int, default=96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vy-bench-pipe-") as tmp:
        rounds, compared = serving(args, Path(tmp))
    report(args, rounds, compared)


if __name__ == "__main__":
    main()
