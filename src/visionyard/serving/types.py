"""The data plane's typed requests and responses, shared by the REST and gRPC adapters.

Tensors hold numpy arrays: numeric data in the array's dtype, ``BYTES`` data as an object array
of :class:`bytes`, so that shape checks, slicing and encoding are the same for every datatype.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Parameters = dict[str, Any]


@dataclass(frozen=True)
class TensorSpec:
    """A tensor in model metadata; ``-1`` marks a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; ``classification`` > 0 asks for top-k strings."""

    name: str
    binary: bool | None = None
    classification: int = 0


@dataclass(frozen=True)
class InferRequest:
    model_name: str
    model_version: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] = field(default_factory=list)
    id: str = ""
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str = ""
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: list[str]


@dataclass
class Timings:
    """Seconds spent per stage of one request (for latency histograms)."""

    preprocess: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    batch_size: int = 0
    output: float = 0.0  # the contract's output decoding
    rows: int = 0  # the request's images (batch rows)
