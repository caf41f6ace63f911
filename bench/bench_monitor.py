"""Benchmark: the cost of monitoring statistics per image, and of a reference profile.

1. Per image (median of many calls): ``image_features`` on a decoded 640x480 RGB image,
   ``source_info`` on its JPEG bytes, ``prediction_records`` per image of a batch of 32.
2. ``build_profile`` of 1,000 640x480 JPEG images (smooth random scenes, written once to a
   temporary folder) with a small CNN (``visionyard.train.models.small_cnn``, random weights:
   its speed is what counts) at 64x64 and, with ``--resnet``, a ResNet-18-style net at 224.
   Reading, hashing, decoding, features, preprocessing, inference and decoding of the
   outputs are all inside the time. Target: under 10 s for 1,000 images on this machine.

    .venv/bin/python bench/bench_monitor.py [--images 1000] [--resnet]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from visionyard.bundle import write_bundle
from visionyard.contract import VisionContract
from visionyard.monitor import build_profile, image_features, prediction_records, source_info
from visionyard.runtime.session import InferenceSession

LABELS = tuple(f"class{i}" for i in range(10))


def scene(rng: np.random.Generator) -> Image.Image:
    """A smooth random 640x480 image (JPEG-compressible like a photo, unlike noise)."""
    small = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 6, (480, 640, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def median_ms(fn: object, repeats: int = 200) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bundle(work: Path, arch: str, size: int) -> Path:
    from visionyard.export.onnx import export_torch
    from visionyard.train import models

    contract = VisionContract.classification(LABELS, input_size=size, resize="resize")
    model = export_torch(getattr(models, arch)(len(LABELS)), contract)
    return write_bundle(work / f"{arch}-bundle", model=model, contract=contract).path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--resnet", action="store_true")
    args = parser.parse_args()
    console, rng = Console(), np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        image = scene(rng)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        jpeg = buffer.getvalue()
        per_image = Table(title="per image (median)")
        per_image.add_column("step")
        per_image.add_column("ms", justify="right")
        per_image.add_row(
            "image_features, 640x480 RGB", f"{median_ms(lambda: image_features(image)):.3f}"
        )
        per_image.add_row(
            "source_info, its JPEG bytes", f"{median_ms(lambda: source_info(jpeg)):.3f}"
        )
        per_image.add_row(
            "decode of that JPEG (for scale)",
            f"{median_ms(lambda: Image.open(io.BytesIO(jpeg)).load(), 50):.3f}",
        )
        contract = VisionContract.classification(LABELS, input_size=64)
        logits = {"logits": rng.normal(0, 1, (32, len(LABELS))).astype(np.float32)}
        from visionyard.contract.postprocess import ImageResult

        results = [ImageResult()] * 32
        cost = median_ms(lambda: prediction_records(logits, results, contract, []), 100) / 32
        per_image.add_row("prediction_records (batch of 32, per image)", f"{cost:.3f}")
        console.print(per_image)

        folder = work / "images"
        folder.mkdir()
        for i in range(args.images):
            scene(rng).save(folder / f"{i:05d}.jpg", "JPEG", quality=90)
        paths = sorted(folder.glob("*.jpg"))
        runs = [("small_cnn", 64)] + ([("resnet18", 224)] if args.resnet else [])
        table = Table(title=f"build_profile of {len(paths)} 640x480 JPEGs")
        for column in ("model", "input", "seconds", "images/s"):
            table.add_column(column)
        for arch, size in runs:
            session = InferenceSession.open(bundle(work, arch, size), intra_op_threads=1)
            start = time.perf_counter()
            profile = build_profile(session, paths, root=folder)
            seconds = time.perf_counter() - start
            assert profile.images == len(paths)
            table.add_row(arch, f"{size}x{size}", f"{seconds:.2f}", f"{len(paths) / seconds:.0f}")
        console.print(table)


if __name__ == "__main__":
    main()
