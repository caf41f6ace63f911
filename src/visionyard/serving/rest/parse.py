"""REST infer bodies: how large a JSON body a model can take, and parsing big ones off the loop.

**Limit.** A model takes at most ``Limits.max_images`` images per request, so its largest JSON
infer body is bounded by what that batch can be in JSON: the tensor input's elements times
:data:`JSON_BYTES_PER_NUMBER` (a float32 written as ``-1.2345678901234567e-05,`` with
indentation), or the base64 encoded images (4/3 of ``max_image_bytes`` each), whichever is
larger, plus :data:`JSON_SLACK`; never above ``max_body_bytes``. :func:`check_json_size` refuses
a larger JSON body with 413 from its ``Content-Length`` before a byte of it is read (and again
after reading, for chunked uploads).

**Parsing.** ``json.loads`` holds the interpreter lock for its whole run (measured here: 0.9 s
for 24 MB of numbers, during which a thread ticking every millisecond did not run once), so a
thread does not keep the event loop responsive. JSON parts up to :data:`INLINE_JSON_BYTES` are
parsed on the loop (well under a millisecond, cheaper than any hand-over); larger ones in one
helper process (``spawn``, started on first use), which also keeps the millions of short-lived
Python numbers of a big tensor out of the server's heap: only the finished numpy arrays come
back. The helper returns its freed memory to the system after each body (``malloc_trim``), and
the server serves buffers above 4 MiB (bodies, arrays) from memory maps that go back to the
system when freed (:func:`return_large_buffers`).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from visionyard.errors import BodyTooLargeError, InvalidInputError, VisionyardError
from visionyard.serving.model import Limits, LoadedModel
from visionyard.serving.rest.codec import parse_infer
from visionyard.serving.types import InferRequest

INLINE_JSON_BYTES = 256 * 1024
T = TypeVar("T")
JSON_BYTES_PER_NUMBER = 48
JSON_SLACK = 64 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1
#: Buffers above this come from their own memory maps (a 1280x960 RGB image, 3.7 MB, stays
#: below it); free heap above :data:`TRIM_THRESHOLD` goes back (glibc's rule: twice the map).
MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


class JsonTooLargeError(BodyTooLargeError):
    """A JSON infer body larger than the model's largest batch can be."""

    def __init__(self, model: str, size: int, limit: int) -> None:
        VisionyardError.__init__(
            self,
            f"the JSON body is {size} bytes; model {model!r} takes at most {limit} bytes of JSON "
            "(its largest batch); send fewer images per request, or tensors with the binary "
            "tensor extension",
        )
        self.limit = limit


def json_limit(model: LoadedModel, limits: Limits, max_body_bytes: int) -> int:
    """The largest JSON infer body ``model`` can take (see the module docstring)."""
    per_sample = math.prod(max(d, 1) for d in model.inputs[0].shape[1:])
    tensor = limits.max_images * per_sample * JSON_BYTES_PER_NUMBER
    images = limits.max_images * (limits.max_image_bytes * 4 // 3 + 4)
    return min(max(tensor, images) + JSON_SLACK, max_body_bytes)


def json_size(content_length: str | None, header_length: str | None) -> int | None:
    """The JSON part's size from the request headers (None when not declared)."""
    for value in (header_length, content_length):
        if value is not None and value.isdigit():
            return int(value)
    return None


def check_json_size(model: LoadedModel, size: int | None, limit: int) -> None:
    if size is not None and size > limit:
        raise JsonTooLargeError(model.name, size, limit)


class BodyParser:
    """Parses infer bodies: small JSON inline, big JSON in a helper process."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        return_large_buffers()

    async def parse(
        self, body: bytes, header_length: str | None, model: str, version: str | None
    ) -> InferRequest:
        size = json_size(str(len(body)), header_length) or len(body)
        if size <= INLINE_JSON_BYTES:
            return parse_infer(body, header_length, model, version)
        loop = asyncio.get_running_loop()
        try:
            ok, value = await loop.run_in_executor(
                self._executor(), _parse_elsewhere, body, header_length, model, version
            )
        except BrokenProcessPool:
            self._pool = None  # the helper died (killed, out of memory): a new one next time
            raise
        if not ok:
            raise InvalidInputError(str(value))
        assert isinstance(value, InferRequest)
        return value

    async def elsewhere(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the helper process (``fn``: a module-level function; it returns
        problems rather than raising them, since domain errors do not survive pickling)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool:
            self._pool = None  # the helper died: a new one next time
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no fork: gRPC and threads run here
            self._pool = ProcessPoolExecutor(1, mp_context=context)
        return self._pool


def _parse_elsewhere(
    body: bytes, header_length: str | None, model: str, version: str | None
) -> tuple[bool, InferRequest | str]:
    """In the helper process: the request, or the problem of an invalid one."""
    try:
        return True, parse_infer(body, header_length, model, version)
    except InvalidInputError as exc:
        return False, exc.problem
    finally:
        del body
        _trim()


def return_large_buffers() -> None:
    """Serve buffers above :data:`MMAP_THRESHOLD` from their own memory maps, returned to the
    system when freed; keep up to :data:`TRIM_THRESHOLD` of free heap for the next request.

    glibc's default raises the map threshold to up to 32 MiB after a big buffer is freed (and
    the trim threshold to twice that), so the buffers of a few large bodies stay in the heap,
    and resident memory stays grown, for good. Pinning the map threshold turns that dynamic rule
    off, trim threshold included, so both are set: with the map threshold at 1 MiB and the trim
    threshold left at its 128 KiB, every 640x480 image's working buffers were mapped or trimmed,
    touched and returned again on each request (~300 page faults an image, -21 % images/s).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def _trim() -> None:
    """Give freed heap memory back to the system (glibc; elsewhere a no-op)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None
