"""gRPC: Triton's extensions to ``inference.GRPCInferenceService``, through the data plane.

``ModelConfig``, ``ModelStatistics`` and the repository rpcs build the same JSON as the REST
adapter (:mod:`visionyard.serving.model_config`, :mod:`visionyard.serving.statistics`,
:mod:`visionyard.serving.repository`) and parse it into the protobuf message with
:func:`google.protobuf.json_format.ParseDict` (the JSON uses Triton's proto field names). The
repository rpcs need the admin token in the ``authorization: Bearer ...`` metadata.

``ModelStreamInfer``: each message is one inference request, served concurrently (up to
:data:`STREAM_WINDOW` at once per stream) and answered in the order they finish, each answer
carrying the request's ``id`` (as Triton does). A message that fails (malformed, unknown model,
bad image) is answered with ``error_message`` and the stream goes on.

The unary rpcs are functions of the servicer (:class:`TritonRpcs`, a mixin of
:class:`visionyard.serving.grpc.server.InferenceServicer`, which wraps them in its error mapping
and access log); ``ModelStreamInfer`` answers errors in its messages, so it is a method.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import json_format

from visionyard.errors import InvalidInputError, VisionyardError
from visionyard.serving import repository
from visionyard.serving.auth import check_admin, check_inference
from visionyard.serving.dataplane import DataPlane
from visionyard.serving.errors import client_message
from visionyard.serving.grpc.codec import encode_infer, parse_infer
from visionyard.serving.logs import access, request_id
from visionyard.serving.model_config import model_config
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.statistics import model_statistics

log = logging.getLogger("visionyard.serving")
STREAM_WINDOW = 64  # requests of one stream in flight at once


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return dict(context.invocation_metadata() or ())


class TritonRpcs:
    """The servicer's state these rpcs read, and ``ModelStreamInfer`` (the unary rpcs are the
    functions below, which the servicer wraps in its error mapping and access log)."""

    plane: DataPlane
    token: str | None
    admin_token: str | None

    async def ModelStreamInfer(  # noqa: N802
        self,
        requests: AsyncIterator[pb.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        metadata = _metadata(context)
        fields: dict[str, Any] = {
            "request_id": request_id(metadata.get("x-request-id")),
            "protocol": "grpc",
            "method": "ModelStreamInfer",
            "status": "OK",
            "messages": 0,
            "errors": 0,
        }
        started = time.perf_counter()
        try:
            try:
                check_inference(self.token, metadata.get("authorization"))
            except VisionyardError as exc:
                fields["status"] = "UNAUTHENTICATED"
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, client_message(exc))
            async for reply in self._stream(requests, metadata):
                fields["messages"] += 1
                fields["errors"] += bool(reply.error_message)
                yield reply
        finally:
            fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            access(fields)

    async def _stream(
        self, requests: AsyncIterator[pb.ModelInferRequest], metadata: dict[str, str]
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        replies: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_WINDOW)
        pending: set[asyncio.Task[None]] = set()

        async def one(message: pb.ModelInferRequest) -> None:
            try:
                await replies.put(await self._stream_reply(message, metadata))
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for message in requests:
                    await slots.acquire()
                    task = asyncio.create_task(one(message))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                while pending:
                    await asyncio.gather(*pending, return_exceptions=True)
            finally:
                await replies.put(None)

        reader = asyncio.create_task(read())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
            await reader  # a failure reading the stream ends the call with its status
        finally:
            reader.cancel()
            for task in list(pending):
                task.cancel()

    async def _stream_reply(
        self, message: pb.ModelInferRequest, metadata: dict[str, str]
    ) -> pb.ModelStreamInferResponse:
        try:
            try:
                parsed, raw = parse_infer(message)
            except VisionyardError as exc:
                self.plane.refused(message.model_name, message.model_version, "grpc", exc)
                raise
            response = await self.plane.infer(parsed, "grpc", metadata)
            return pb.ModelStreamInferResponse(infer_response=encode_infer(response, raw))
        except VisionyardError as exc:
            return _stream_error(message, f"{exc.code}: {client_message(exc)}")
        except Exception:  # a bug: this message fails, the stream goes on
            log.exception("stream message failed", extra={"fields": {"id": message.id}})
            self.plane.failed_on_bug(message.model_name, message.model_version, "grpc")
            return _stream_error(message, "internal error (see the server log)")


def _stream_error(message: pb.ModelInferRequest, text: str) -> pb.ModelStreamInferResponse:
    echo = pb.ModelInferResponse(
        model_name=message.model_name, model_version=message.model_version, id=message.id
    )
    return pb.ModelStreamInferResponse(error_message=text, infer_response=echo)


def _no_parameters(parameters: Any) -> None:
    """Triton's load parameters (a config override, model files) have no meaning here: refused,
    never silently ignored. ``unload_dependents`` (sent by tritonclient) is accepted: no model
    here depends on another, so both of its values mean the same."""
    unknown = sorted(set(parameters) - {"unload_dependents"})
    if unknown:
        raise InvalidInputError(
            f"load/unload parameters {unknown} are not supported: visionyard loads each model "
            "from its configured reference (serving.models)"
        )


def _admin(servicer: TritonRpcs, context: grpc.aio.ServicerContext) -> None:
    check_admin(servicer.admin_token, _metadata(context).get("authorization"))


async def ModelConfig(  # noqa: N802
    servicer: TritonRpcs, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
) -> pb.ModelConfigResponse:
    check_inference(servicer.token, _metadata(context).get("authorization"))
    config = model_config(servicer.plane.pool, request.name, request.version or None)
    return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfig()))


async def ModelStatistics(  # noqa: N802
    servicer: TritonRpcs, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
) -> pb.ModelStatisticsResponse:
    check_inference(servicer.token, _metadata(context).get("authorization"))
    pool = servicer.plane.pool
    stats = model_statistics(pool, request.name or None, request.version or None)
    response: pb.ModelStatisticsResponse = json_format.ParseDict(
        stats, pb.ModelStatisticsResponse()
    )
    return response


async def RepositoryIndex(  # noqa: N802
    servicer: TritonRpcs, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
) -> pb.RepositoryIndexResponse:
    _admin(servicer, context)
    rows = repository.index(servicer.plane.pool, request.ready)
    index = pb.RepositoryIndexResponse.ModelIndex
    return pb.RepositoryIndexResponse(models=[index(**row) for row in rows])


async def RepositoryModelLoad(  # noqa: N802
    servicer: TritonRpcs,
    request: pb.RepositoryModelLoadRequest,
    context: grpc.aio.ServicerContext,
) -> pb.RepositoryModelLoadResponse:
    _admin(servicer, context)
    _no_parameters(request.parameters)
    await repository.load(servicer.plane.pool, request.model_name)
    return pb.RepositoryModelLoadResponse()


async def RepositoryModelUnload(  # noqa: N802
    servicer: TritonRpcs,
    request: pb.RepositoryModelUnloadRequest,
    context: grpc.aio.ServicerContext,
) -> pb.RepositoryModelUnloadResponse:
    _admin(servicer, context)
    _no_parameters(request.parameters)
    await repository.unload(servicer.plane.pool, request.model_name)
    return pb.RepositoryModelUnloadResponse()
