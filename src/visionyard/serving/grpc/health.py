"""The standard gRPC health service (``grpc.health.v1.Health``) and server reflection.

Kubernetes' gRPC probes and ``grpc_health_probe`` call ``Health/Check``:

- service ``""`` (the server) or ``inference.GRPCInferenceService``: SERVING while the server is
  ready (every model has a version serving, not draining), NOT_SERVING otherwise, like
  ``/v2/health/ready``; a readiness probe;
- service ``liveness``: SERVING while the process answers, like ``/v2/health/live``;
- any other service: NOT_FOUND (``Watch`` sends SERVICE_UNKNOWN, as the protocol says).

The servicer is written here, not grpcio-health-checking's ``HealthServicer``: that one answers
a status someone ``set()`` earlier, and readiness changes with every load, unload and drain in
the data plane. Computing it on each call keeps one source of truth. The messages and the
service registration are the library's. Reflection (grpcio-reflection) lists the inference
service, health and reflection itself, so ``grpcurl`` works without a proto file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from visionyard.serving.dataplane import DataPlane
from visionyard.serving.proto import grpc_service_pb2 as pb

INFERENCE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
LIVENESS = "liveness"
WATCH_INTERVAL_S = 1.0


class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    def status(self, service: str) -> int | None:
        """The service's status now; None for a service this server does not know."""
        if service in ("", INFERENCE):
            ready = self.plane.ready()
        elif service == LIVENESS:
            ready = self.plane.live()
        else:
            return None
        return _SERVING if ready else _NOT_SERVING

    async def Check(  # noqa: N802
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status is None:
            known = ", ".join(repr(s) for s in ("", INFERENCE, LIVENESS))
            message = f"unknown service {request.service!r}; this server checks {known}"
            await context.abort(grpc.StatusCode.NOT_FOUND, message)
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(  # noqa: N802
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """The status now, then each change (checked every :data:`WATCH_INTERVAL_S`)."""
        last = None
        while True:
            status = self.status(request.service)
            status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN if status is None else status
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            await asyncio.sleep(WATCH_INTERVAL_S)


_SERVING: int = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING


def add_standard_services(server: grpc.aio.Server, plane: DataPlane) -> None:
    """Health and reflection beside the inference service."""
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(plane), server)
    services = (INFERENCE, HEALTH, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(services, server)
