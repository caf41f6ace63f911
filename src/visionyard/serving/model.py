"""One loaded model version: its session, batcher, tensor specs, admission counter and inputs.

A request names either the model's image tensor input (``contract.input_name``, already
preprocessed) or :data:`IMAGE_INPUT`, a ``BYTES`` tensor of encoded images (JPEG, PNG, WebP...,
one element per image) that the server decodes and preprocesses by the version's contract. Each
image is decoded separately so that one bad image names its index in a clean error.

A tensor input holding NaN or infinities is refused unless the bundle's metadata declares
``"accepts_non_finite": true`` (a model that handles them itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from visionyard.contract.preprocess import ImageMeta, decode_for_contract, preprocess_image
from visionyard.contract.schema import VisionContract
from visionyard.errors import ImageError, ImageTooLargeError, InvalidInputError
from visionyard.runtime.session import InferenceSession
from visionyard.runtime.signature import check_tensor
from visionyard.serving.batching import Batcher, Work
from visionyard.serving.codec import datatype_of
from visionyard.serving.errors import ModelUnavailableError, ServerBusyError
from visionyard.serving.outputs import build_outputs, output_specs
from visionyard.serving.statistics import ModelStats
from visionyard.serving.types import Parameters, RequestedOutput, Tensor, TensorSpec

if TYPE_CHECKING:
    from visionyard.serving.monitoring import Watcher
    from visionyard.serving.watch import Watch

IMAGE_INPUT = "image"
PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 40_000_000
    max_image_bytes: int = 32 * 1024 * 1024
    max_images: int = 64
    max_in_flight: int = 256
    retry_after_s: int = 1


@dataclass(frozen=True)
class ModelBatch:
    tensor: np.ndarray
    metas: list[ImageMeta]


#: Turns a request's slice of the raw outputs (and its images' metadata) into its result.
Finish = Callable[[dict[str, np.ndarray], list[ImageMeta]], Any]


class LoadedModel:
    """A version being served; requests :meth:`acquire` it and :meth:`release` it when done."""

    def __init__(
        self,
        name: str,
        version: str,
        session: InferenceSession,
        batcher: Batcher,
        stats: ModelStats | None = None,
    ):
        self.name = name
        self.version = version
        #: what the pool compares to tell a change (a pipeline adds its stages' versions)
        self.revision = version
        #: parameters of every response (a pipeline: its stages' versions)
        self.parameters: Parameters = {}
        self.session = session
        self.batcher = batcher
        self.inputs = input_specs(session)
        self.outputs = output_specs(session)
        self.accepts_non_finite = session.bundle.metadata.get("accepts_non_finite") is True
        self.in_flight = 0
        #: Triton's statistics of this version (the batcher counts its executions in them)
        self.stats = stats or ModelStats()
        self.monitor: Watcher | None = None  # set by the pool when monitoring is on
        self._closing = False
        self._drained = asyncio.Event()

    @property
    def contract(self) -> VisionContract:
        """The contract of what this version answers (a pipeline's end result, not a stage's):
        what metadata and config show."""
        return self.session.contract

    @property
    def variant(self) -> str:
        return self.session.variant

    def acquire(self, limits: Limits) -> None:
        """Admit one request or refuse it (queue full) before any work is done."""
        if self._closing:
            raise ModelUnavailableError(self.name, "unloading")
        if self.in_flight >= limits.max_in_flight:
            raise ServerBusyError(self.name, limits.max_in_flight, limits.retry_after_s)
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        if self._closing and self.in_flight == 0:
            self._drained.set()

    async def retire(self) -> None:
        """Let in-flight requests finish on this version, then stop its batcher."""
        self._closing = True
        if self.in_flight:
            await self._drained.wait()
        await self.batcher.close()

    def work(self, tensor: Tensor, limits: Limits, finish: Finish) -> Work:
        """One request for the batcher: checked here (on the event loop), decoded on a worker.

        ``finish(raw_outputs, metas)`` turns the request's slice of the outputs into its result.
        """
        if tensor.name != IMAGE_INPUT:
            batch = self.tensor_input(tensor)
            if len(batch.tensor) > limits.max_images:
                raise InvalidInputError(
                    f"{len(batch.tensor)} images in one request; send 1 to {limits.max_images}"
                )
            watch = self.monitor.watch(None) if self.monitor else None
            return Work(
                len(batch.tensor), lambda: (batch.tensor, batch.metas), _watched(finish, watch),
                watch.after if watch else None,
            )  # fmt: skip
        items = image_items(tensor, limits)
        watch = self.monitor.watch(items) if self.monitor else None
        seen = watch.image if watch else None
        return Work(
            len(items), lambda: self.decode_images(items, limits, seen), _watched(finish, watch),
            watch.after if watch else None,
        )  # fmt: skip

    def finisher(self, requested: list[RequestedOutput], probabilities: bool) -> Finish:
        """What turns a request's slice of the outputs into its response tensors."""

        def finish(raw: dict[str, np.ndarray], metas: list[ImageMeta]) -> list[Tensor]:
            return build_outputs(
                self.session, self.outputs, raw, metas, requested, probabilities=probabilities
            )

        return finish

    def tensor_input(self, tensor: Tensor) -> ModelBatch:
        """Validate a preprocessed tensor input (datatype, shape, element count)."""
        meta = self.session.input_meta
        want = datatype_of(meta.dtype)
        if tensor.datatype != want:
            raise InvalidInputError(
                f"input {tensor.name!r} has datatype {tensor.datatype}; the model takes {want}"
            )
        array = check_tensor(tensor.data, meta, self.session.contract)
        if array.dtype.kind == "f" and not self.accepts_non_finite and not np.isfinite(array).all():
            raise InvalidInputError(
                f"input {tensor.name!r} holds NaN or infinite values; model {self.name!r} does "
                'not declare "accepts_non_finite" in its bundle metadata'
            )
        size = self.session.contract.preprocessing.input_size
        identity = ImageMeta(size.width, size.height, 1.0, 1.0, 0.0, 0.0)
        return ModelBatch(array, [identity] * len(array))

    def decode_images(
        self,
        items: list[bytes],
        limits: Limits,
        seen: Callable[[int, Image.Image], None] | None = None,
    ) -> tuple[np.ndarray, list[ImageMeta]]:
        """Decode and preprocess encoded images by the contract (blocking: run off the loop);
        ``seen(index, image)`` is shown each decoded image (monitoring)."""
        contract = self.session.contract
        arrays, metas = [], []
        for index, data in enumerate(items):
            image = _decode(index, data, contract, limits)
            if seen is not None:
                seen(index, image)
            array, meta = preprocess_image(image, contract)
            arrays.append(array)
            metas.append(meta)
        return (arrays[0][np.newaxis] if len(arrays) == 1 else np.stack(arrays)), metas

    def pick_input(self, inputs: list[Tensor]) -> Tensor:
        names = [spec.name for spec in self.inputs]
        if len(inputs) != 1 or inputs[0].name not in names:
            given = [t.name for t in inputs]
            raise InvalidInputError(
                f"model {self.name!r} takes exactly one input, one of {names}; got {given}"
            )
        return inputs[0]


def _watched(finish: Finish, watch: Watch | None) -> Callable[[dict[str, np.ndarray], Any], Any]:
    """``finish``, then what the request's monitoring keeps of it (never raises; its work runs
    in :meth:`Watch.after`) when it is watched."""
    if watch is None:
        return finish

    def done(raw: dict[str, np.ndarray], metas: list[ImageMeta]) -> Any:
        result = finish(raw, metas)
        watch.finish(raw, metas)
        return result

    return done


def input_specs(session: InferenceSession) -> list[TensorSpec]:
    meta = session.input_meta
    shape = tuple(meta.fixed(i) or -1 for i in range(len(meta.shape)))
    return [
        TensorSpec(meta.name, datatype_of(meta.dtype), shape),
        TensorSpec(IMAGE_INPUT, "BYTES", (-1,)),
    ]


def image_items(tensor: Tensor, limits: Limits) -> list[bytes]:
    """The encoded images of a BYTES input, checked (count, sizes) before any is decoded."""
    if tensor.datatype != "BYTES":
        raise InvalidInputError(
            f"input {IMAGE_INPUT!r} takes encoded images as BYTES, not {tensor.datatype}"
        )
    if tensor.data.ndim not in (1, 2) or (tensor.data.ndim == 2 and tensor.data.shape[1] != 1):
        raise InvalidInputError(
            f"input {IMAGE_INPUT!r} has shape {list(tensor.shape)}; expected [N] or [N, 1]"
        )
    items = [bytes(item) for item in tensor.data.reshape(-1)]
    if not 1 <= len(items) <= limits.max_images:
        raise InvalidInputError(
            f"{len(items)} images in one request; send 1 to {limits.max_images}"
        )
    for index, item in enumerate(items):
        if len(item) > limits.max_image_bytes:
            raise InvalidInputError(
                f"image {index} is {len(item)} bytes, above the limit of {limits.max_image_bytes}"
            )
    return items


def _decode(index: int, data: bytes, contract: VisionContract, limits: Limits) -> Image.Image:
    try:
        return decode_for_contract(data, contract, limits.max_pixels)
    except ImageTooLargeError as exc:
        raise ImageTooLargeError(f"image {index}", exc.width, exc.height, exc.limit) from exc
    except ImageError as exc:
        raise ImageError(f"image {index}", exc.problem) from exc
