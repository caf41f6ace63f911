"""The baseline: a minimal hand-written FastAPI server (what a team writes in an afternoon).

One ONNX Runtime session with default options, PIL decode + resize + numpy normalise inside a
sync endpoint (FastAPI runs it on its thread pool). Run: python serving_minimal.py MODEL PORT
"""

from __future__ import annotations

import io
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
app = FastAPI()
session: ort.InferenceSession | None = None


@app.post("/predict")
async def predict_raw(request: Request) -> dict[str, object]:
    data = await request.body()
    return await _run(data)


async def _run(data: bytes) -> dict[str, object]:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_infer, data)


def _infer(data: bytes) -> dict[str, object]:
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((256, 256))
    pixels = np.asarray(image, np.float32)[16:240, 16:240] / 255.0
    tensor = ((pixels - MEAN) / STD).transpose(2, 0, 1)[np.newaxis].astype(np.float32)
    assert session is not None
    logits = session.run(None, {"input": tensor})[0][0]
    best = int(logits.argmax())
    return {"index": best, "score": float(logits[best])}


if __name__ == "__main__":
    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
