"""Triton's model configuration of a served version (``GET /v2/models/{name}/config``, gRPC
``ModelConfig``), as JSON in Triton's field names; the gRPC adapter parses the same JSON into
``inference.ModelConfig``.

What the fields say about visionyard's server:

- ``max_batch_size``: the most images one request may carry (``images.max_images``); tensors'
  ``dims`` leave the batch axis out, as Triton's do (a ``[N]`` tensor is ``dims: [1]`` with
  ``reshape: {shape: []}``, Triton's way of writing it);
- ``dynamic_batching``: the batcher's batch size (``preferred_batch_size``) and how long a
  worker waits for more while the others are busy (``max_queue_delay_microseconds``);
- ``instance_group``: one group of ``serving.inference_workers`` instances on the CPU, or on GPU
  0 when ONNX Runtime runs the model on CUDA or TensorRT;
- ``parameters``: the variant, the contract's digest, the registry reference and the execution
  providers, as strings (Triton's ``ModelParameter``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from visionyard.serving.errors import redact_paths
from visionyard.serving.model import IMAGE_INPUT, PLATFORM

if TYPE_CHECKING:
    from visionyard.serving.model import LoadedModel
    from visionyard.serving.pool import ModelPool
    from visionyard.serving.types import TensorSpec

BACKEND = "onnxruntime"
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def model_config(pool: ModelPool, name: str, version: str | None = None) -> dict[str, Any]:
    """The config of ``name``'s serving version (``version``, when given, must be it)."""
    model = pool.current(name, version)  # unknown -> not_found; none serving -> unavailable
    batch = pool.config.batch
    layout = model.session.contract.preprocessing.layout
    return {
        "name": name,
        "platform": PLATFORM,
        "backend": BACKEND,
        "max_batch_size": pool.config.limits.max_images,
        "input": [_input(spec, layout) for spec in model.inputs],
        "output": [_tensor(spec) for spec in model.outputs],
        "dynamic_batching": {
            "preferred_batch_size": [batch.max_batch_size],
            "max_queue_delay_microseconds": round(batch.max_queue_delay_s * 1e6),
        },
        "instance_group": [_instances(model, batch.workers)],
        "parameters": {k: {"string_value": v} for k, v in _parameters(pool, model).items()},
    }


def triton_datatype(datatype: str) -> str:
    """OIP datatype -> Triton's ``DataType`` enum name (``BYTES`` is ``TYPE_STRING``)."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    dims = list(spec.shape[1:])
    tensor: dict[str, Any] = {"name": spec.name, "data_type": triton_datatype(spec.datatype)}
    if dims:
        tensor["dims"] = dims
    else:
        tensor["dims"], tensor["reshape"] = [1], {"shape": []}
    return tensor


def _input(spec: TensorSpec, layout: str) -> dict[str, Any]:
    tensor = _tensor(spec)
    if spec.name != IMAGE_INPUT:
        tensor["format"] = f"FORMAT_{layout}"
    return tensor


def _instances(model: LoadedModel, workers: int) -> dict[str, Any]:
    gpu = any(p in GPU_PROVIDERS for p in model.session.providers)
    group: dict[str, Any] = {
        "name": model.name,
        "kind": "KIND_GPU" if gpu else "KIND_CPU",
        "count": workers,
    }
    if gpu:
        group["gpus"] = [0]
    return group


def _parameters(pool: ModelPool, model: LoadedModel) -> dict[str, str]:
    return {
        "version": model.version,
        "variant": model.variant,
        "contract_digest": model.contract.digest(),
        "reference": redact_paths(pool.entry(model.name).source.reference),
        "execution_providers": ",".join(model.session.providers),
    }
