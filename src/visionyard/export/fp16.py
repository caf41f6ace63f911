"""FP16 variants: half-precision weights and arithmetic for GPU execution, float32 at the edges.

ONNX Runtime's converter (``onnxruntime.transformers.float16``) does the conversion. The model
keeps **float32 inputs and outputs** (``keep_io_types``, casts inserted inside the graph): every
variant of a version then shares one vision contract, preprocessing stays the same, and
callers never see a dtype change. ONNX Runtime's CPU provider runs FP16 models too (slowly),
which is how the variant's accuracy is checked on a machine without a GPU.
"""

from __future__ import annotations

import onnx

from visionyard.errors import ExportError


def convert_fp16(model: bytes) -> bytes:
    """The FP16 model (float32 inputs/outputs) as bytes."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load_from_string(model)
    try:
        half = convert_float_to_float16(proto, keep_io_types=True)
    except (ValueError, AssertionError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"FP16 conversion failed: {exc}") from exc
    return bytes(half.SerializeToString())
