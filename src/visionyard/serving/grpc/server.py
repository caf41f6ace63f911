"""The gRPC adapter: ``inference.GRPCInferenceService`` on grpc.aio, sharing the event loop.

Thin: each RPC converts protobuf to data plane types and back. :data:`GRPC_STATUS` is the gRPC
adapter's ONE mapping from domain error codes to status codes (default INTERNAL). Every call is
access-logged as JSON with its ``x-request-id`` (from the client's metadata, or new), which is
also returned in the trailing metadata.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from visionyard.errors import VisionyardError
from visionyard.serving.auth import check_inference
from visionyard.serving.dataplane import DataPlane
from visionyard.serving.errors import ServerBusyError, client_message
from visionyard.serving.grpc import triton
from visionyard.serving.grpc.codec import encode_infer, parse_infer
from visionyard.serving.grpc.health import add_standard_services
from visionyard.serving.grpc.triton import TritonRpcs
from visionyard.serving.logs import access, peer_host, request_id
from visionyard.serving.metrics import INTERNAL
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc
from visionyard.settings import ServingSettings

log = logging.getLogger("visionyard.serving")
#: The gRPC adapter's mapping from domain codes to status codes.
GRPC_STATUS: dict[str, grpc.StatusCode] = {
    "inference.invalid_input": grpc.StatusCode.INVALID_ARGUMENT,
    "image.invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "image.too_large": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "serving.unauthorized": grpc.StatusCode.UNAUTHENTICATED,
    "serving.forbidden": grpc.StatusCode.PERMISSION_DENIED,
    "serving.body_too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "serving.busy": grpc.StatusCode.UNAVAILABLE,  # REST 503 with Retry-After
    "serving.unavailable": grpc.StatusCode.UNAVAILABLE,
}
#: what a client is told about a bug (its traceback is in the server log)
INTERNAL_MESSAGE = "internal server error (see the server log)"
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def _rpc(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Map domain errors to statuses; access-log the call with its request id."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        metadata = dict(context.invocation_metadata() or ())
        # the client's x-request-id, else the OIP request id (ModelInferRequest.id), else new
        rid = request_id(metadata.get("x-request-id") or getattr(request, "id", None) or None)
        fields: dict[str, Any] = {
            "request_id": rid,
            "protocol": "grpc",
            "method": method.__name__,
            "status": "OK",
        }
        started = time.perf_counter()
        response = None
        try:
            context.set_trailing_metadata((("x-request-id", rid),))
            response = await method(self, request, context)
            return response
        except VisionyardError as exc:
            code = GRPC_STATUS.get(exc.code, grpc.StatusCode.INTERNAL)
            fields.update(status=code.name, error_code=exc.code, error=client_message(exc))
            await context.abort(code, client_message(exc), trailing_metadata=_trailer(rid, exc))
            raise  # unreachable: abort raises
        except grpc.aio.AbortError:
            raise  # the method aborted with its own status
        except Exception as exc:  # a bug: INTERNAL, generic (its text may hold server paths)
            log.error("internal error", exc_info=exc, extra={"fields": {"method": method.__name__}})
            fields.update(status="INTERNAL", error_code=INTERNAL, error=INTERNAL_MESSAGE)
            trailer = (("x-request-id", rid),)
            code = grpc.StatusCode.INTERNAL
            await context.abort(code, INTERNAL_MESSAGE, trailing_metadata=trailer)
            raise  # unreachable: abort raises
        finally:
            fields.update(_call_fields(request, response, context, started))
            access(fields)

    return wrapper


def _call_fields(
    request: Any, response: Any, context: grpc.aio.ServicerContext, started: float
) -> dict[str, Any]:
    """Model, version and client of a call, as the REST access line has them."""
    model = getattr(request, "model_name", None) or getattr(request, "name", None)
    version = getattr(response, "model_version", None) or getattr(request, "model_version", None)
    return {
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "model": model or None,
        "version": version or getattr(request, "version", None) or None,
        "client": peer_host(context.peer() or ""),
    }


def _trailer(rid: str, exc: VisionyardError) -> tuple[tuple[str, str], ...]:
    if isinstance(exc, ServerBusyError):
        return (("x-request-id", rid), ("retry-after", str(exc.retry_after_s)))
    return (("x-request-id", rid),)


class InferenceServicer(TritonRpcs, pb_grpc.GRPCInferenceServiceServicer):
    """The KServe v2 rpcs here, Triton's extensions in :class:`TritonRpcs`."""

    def __init__(self, plane: DataPlane, settings: ServingSettings) -> None:
        self.plane = plane
        self.token = settings.inference_token
        self.admin_token = settings.admin_token

    ModelConfig = _rpc(triton.ModelConfig)
    ModelStatistics = _rpc(triton.ModelStatistics)
    RepositoryIndex = _rpc(triton.RepositoryIndex)
    RepositoryModelLoad = _rpc(triton.RepositoryModelLoad)
    RepositoryModelUnload = _rpc(triton.RepositoryModelUnload)

    @_rpc
    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=self.plane.live())

    @_rpc
    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.plane.ready())

    @_rpc
    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    @_rpc
    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:  # noqa: N802
        meta = self.plane.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta.name, version=meta.version, extensions=meta.extensions
        )

    @_rpc
    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        metadata = dict(context.invocation_metadata() or ())
        check_inference(self.token, metadata.get("authorization"))
        meta = self.plane.model_metadata(request.name, request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=[tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in meta.inputs],
            outputs=[tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in meta.outputs],
        )

    @_rpc
    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        metadata = dict(context.invocation_metadata() or ())
        try:
            try:
                check_inference(self.token, metadata.get("authorization"))
                parsed, raw = parse_infer(request)
            except VisionyardError as exc:
                self.plane.refused(request.model_name, request.model_version, "grpc", exc)
                raise
            response = await self.plane.infer(parsed, "grpc", metadata)
            return encode_infer(response, raw)
        except VisionyardError:
            raise
        except Exception:
            self.plane.failed_on_bug(request.model_name, request.model_version, "grpc")
            raise


def create_grpc_server(plane: DataPlane, settings: ServingSettings) -> grpc.aio.Server:
    limit = settings.max_body_bytes
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # grpc binds with SO_REUSEPORT by default: a second server on a port in use would
        # start and take part of the first one's connections; off, binding it fails
        ("grpc.so_reuseport", 0),
        # a connection that has not finished the HTTP/2 handshake in time is closed (the REST
        # port's head timeout, for gRPC: slow or silent clients cannot pile up)
        ("grpc.server_handshake_timeout_ms", max(1, round(settings.header_timeout_s * 1000))),
    ]
    server = grpc.aio.server(options=options)
    servicer = InferenceServicer(plane, settings)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    add_standard_services(server, plane)
    return server
