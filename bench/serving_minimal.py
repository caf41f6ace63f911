"""The baseline: a minimal hand-written FastAPI server (what a team writes in an afternoon).

One ONNX Runtime session with default options, PIL decode + resize + centre crop + numpy
normalise, batch 1 per request, top-1 JSON out. Three forms, the third argument:

- ``inline`` (default): the work runs inside the ``async def`` endpoint, as most quick FastAPI
  model servers do, so requests are served one at a time;
- ``threads``: the work runs on Starlette's thread pool (``run_in_threadpool``), so one
  request's decoding overlaps another's inference;
- ``upload``: as ``inline``, but the image comes as a multipart file upload
  (``file: UploadFile``), the form FastAPI's documentation teaches for receiving files.

The issue calibrates the baseline as reaching 0.75-0.92x of a plain single-threaded loop of the
same code; ``loop`` runs :func:`infer` in such a loop (in its own process, like the servers) and
prints images/s, so that bench_serving.py can measure that ratio for both forms.

    python serving_minimal.py MODEL PORT [inline|threads|upload]
    python serving_minimal.py MODEL loop SECONDS IMAGE...
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request, UploadFile
from PIL import Image
from starlette.concurrency import run_in_threadpool

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
app = FastAPI()
session: ort.InferenceSession | None = None
THREADS = False


@app.post("/upload")
async def upload(file: UploadFile) -> dict[str, object]:
    data = await file.read()
    assert session is not None
    return infer(session, data)


@app.post("/predict")
async def predict(request: Request) -> dict[str, object]:
    data = await request.body()
    assert session is not None
    if THREADS:
        return await run_in_threadpool(infer, session, data)
    return infer(session, data)


def infer(model: ort.InferenceSession, data: bytes) -> dict[str, object]:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    scale = 256 / min(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    pixels = np.asarray(image, np.float32)[top : top + 224, left : left + 224] / 255.0
    tensor = ((pixels - MEAN) / STD).transpose(2, 0, 1)[np.newaxis].astype(np.float32)
    logits = model.run(None, {"input": tensor})[0][0]
    best = int(logits.argmax())
    return {"index": best, "score": float(logits[best])}


def open_session(path: str) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def loop(model: ort.InferenceSession, seconds: float, images: list[bytes]) -> float:
    infer(model, images[0])  # warm-up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        infer(model, images[count % len(images)])
        count += 1
    return count / (time.perf_counter() - started)


if __name__ == "__main__":
    session = open_session(sys.argv[1])
    if sys.argv[2] == "loop":
        photos = [Path(path).read_bytes() for path in sys.argv[4:]]
        print(f"{loop(session, float(sys.argv[3]), photos):.3f}")
        sys.exit(0)
    THREADS = len(sys.argv) > 3 and sys.argv[3] == "threads"
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
