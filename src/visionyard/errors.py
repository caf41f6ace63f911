"""The one exception tree of visionyard.

Every error a user can cause or meet is a :class:`VisionyardError` with a stable domain
``code`` (not an HTTP status). The edges (CLI, REST, gRPC) each own ONE table mapping codes to
exit codes / status codes. Third-party errors (mlflow, onnxruntime, grpc, Pillow) are translated
at the boundary with ``raise ... from exc``.

::

    VisionyardError                      code
    ├── ConfigError                      config.invalid
    ├── ContractError                    contract.invalid
    ├── ImageError                       image.invalid
    │   └── ImageTooLargeError           image.too_large
    ├── BundleError                      bundle.invalid
    │   └── BundleIntegrityError         bundle.tampered
    ├── DatasetError                     dataset.invalid
    │   └── CorruptImagesError           dataset.corrupt_images
    ├── TrackingError                    tracking.failed
    │   └── TrackingUnavailableError     tracking.unavailable
    ├── NotFoundError                    not_found
    ├── RegistryError                    registry.conflict
    ├── GateFailedError                  gate.failed
    ├── ExportError                      export.failed
    ├── InferenceError                   inference.failed
    │   └── InvalidInputError            inference.invalid_input
    ├── TrainingError                    training.failed
    ├── ServerBusyError                  serving.busy
    ├── ModelUnavailableError            serving.unavailable
    ├── UnauthorizedError                serving.unauthorized
    ├── AdminDisabledError               serving.forbidden
    ├── BodyTooLargeError                serving.body_too_large
    └── DependencyMissingError           dependency.missing

Subclasses take structured arguments and build a message that names the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class VisionyardError(Exception):
    """Base class; ``code`` is the domain code the edges map to exit/status codes."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(VisionyardError):
    code = "config.invalid"


class ContractError(VisionyardError):
    """An invalid vision contract; ``field`` names the offending field (dotted path)."""

    code = "contract.invalid"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid vision contract: {field}: {problem}")
        self.field = field
        self.problem = problem


class ImageError(VisionyardError):
    """An image that cannot be decoded (corrupt, truncated, empty, unsupported)."""

    code = "image.invalid"

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"cannot read image {source}: {problem}")
        self.source = source
        self.problem = problem


class ImageTooLargeError(ImageError):
    """Declared dimensions above the pixel limit (decompression bomb protection)."""

    code = "image.too_large"

    def __init__(self, source: str, width: int, height: int, limit: int) -> None:
        super().__init__(
            source,
            f"{width}x{height} = {width * height} pixels exceeds the limit of {limit} "
            "(raise VISIONYARD_IMAGES__MAX_PIXELS if this image is legitimate)",
        )
        self.width = width
        self.height = height
        self.limit = limit


class BundleError(VisionyardError):
    code = "bundle.invalid"

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"bundle {path}: {problem}")
        self.path = str(path)
        self.problem = problem


class BundleIntegrityError(BundleError):
    """A bundle whose files do not match its manifest (tampered, missing or extra files)."""

    code = "bundle.tampered"


class DatasetError(VisionyardError):
    code = "dataset.invalid"


class CorruptImagesError(DatasetError):
    """A dataset holding images that cannot be read; every path is listed."""

    code = "dataset.corrupt_images"

    def __init__(self, root: Path | str, problems: Sequence[tuple[str, str]]) -> None:
        shown = "; ".join(f"{path}: {why}" for path, why in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(
            f"{len(problems)} unreadable image(s) in {root}: {shown}{more}. "
            "Remove or replace them and run again."
        )
        self.root = str(root)
        self.problems = list(problems)


class TrackingError(VisionyardError):
    code = "tracking.failed"


class TrackingUnavailableError(TrackingError):
    code = "tracking.unavailable"

    def __init__(self, uri: str, detail: str) -> None:
        super().__init__(
            f"tracking store {uri} is not reachable ({detail}); check that the server is "
            "running and VISIONYARD_TRACKING__URI is right"
        )
        self.uri = uri


class NotFoundError(VisionyardError):
    code = "not_found"

    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        suffix = f"; {hint}" if hint else ""
        super().__init__(f"{kind} {name!r} not found{suffix}")
        self.kind = kind
        self.name = name


class RegistryError(VisionyardError):
    code = "registry.conflict"


class GateFailedError(VisionyardError):
    code = "gate.failed"


class ExportError(VisionyardError):
    code = "export.failed"


class InferenceError(VisionyardError):
    """The model failed while running (ONNX Runtime error on valid input)."""

    code = "inference.failed"


class InvalidInputError(InferenceError):
    """A tensor or request the model cannot take (wrong dtype, shape, rank, batch)."""

    code = "inference.invalid_input"

    def __init__(self, problem: str) -> None:
        super().__init__(f"invalid model input: {problem}")
        self.problem = problem


class TrainingError(VisionyardError):
    code = "training.failed"


class DependencyMissingError(VisionyardError):
    code = "dependency.missing"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this command needs {package}; install it with: pip install 'visionyard[{extra}]'"
        )
        self.package = package
        self.extra = extra


class ServerBusyError(VisionyardError):
    """A model's queue is full: the client should retry after ``retry_after_s`` seconds."""

    code = "serving.busy"

    def __init__(self, model: str, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"model {model!r} has {limit} requests in flight (its queue limit); retry in "
            f"{retry_after_s}s or raise VISIONYARD_SERVING__MAX_QUEUE_SIZE"
        )
        self.retry_after_s = retry_after_s


class ModelUnavailableError(VisionyardError):
    """The model is known but has no loaded version (still loading, failed, or unloaded)."""

    code = "serving.unavailable"

    def __init__(self, model: str, state: str, detail: str = "") -> None:
        suffix = f": {detail}" if detail else ""
        super().__init__(f"model {model!r} is not ready ({state}){suffix}")
        self.state = state


class UnauthorizedError(VisionyardError):
    """A missing or wrong bearer token."""

    code = "serving.unauthorized"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} needs a valid bearer token (Authorization: Bearer <token>)")


class AdminDisabledError(VisionyardError):
    code = "serving.forbidden"

    def __init__(self) -> None:
        super().__init__(
            "the admin API is disabled: set VISIONYARD_SERVING__ADMIN_TOKEN to enable it"
        )


class BodyTooLargeError(VisionyardError):
    code = "serving.body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body is larger than {limit} bytes (VISIONYARD_SERVING__MAX_BODY_BYTES)"
        )
        self.limit = limit
