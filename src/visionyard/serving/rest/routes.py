"""The REST adapter: the OIP v2 REST API (JSON and binary tensors), ``:predict``, admin, metrics.

Thin by design: each endpoint converts HTTP to :mod:`visionyard.serving.types`, calls the data
plane or the pool, and converts back. The two inference endpoints are implemented in
:mod:`visionyard.serving.rest.hot`, with :data:`~visionyard.serving.rest.hot.HTTP_STATUS`, the
REST adapter's ONE mapping from domain error codes to HTTP status codes.

With an inference token set, model metadata needs it too (it shows the contract, labels and the
registry reference); health, readiness, server metadata and ``/metrics`` stay open for probes
and scrapers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp

from visionyard import __version__
from visionyard.errors import InvalidInputError, VisionyardError
from visionyard.serving import repository
from visionyard.serving.auth import check_admin, check_inference
from visionyard.serving.dataplane import DataPlane
from visionyard.serving.metrics import CONTENT_TYPE
from visionyard.serving.predict import read_images
from visionyard.serving.repository import index_row
from visionyard.serving.rest.codec import json_problem
from visionyard.serving.rest.hot import (
    HotPath,
    Reply,
    authorize,
    check_declared_size,
    error_reply,
    infer_reply,
    internal_reply,
    predict_reply,
)
from visionyard.serving.rest.middleware import RequestContextMiddleware
from visionyard.serving.rest.parse import BodyParser
from visionyard.serving.rest.triton import error_handlers, triton_routes
from visionyard.settings import MonitorSettings, ServingSettings


def create_rest_app(
    plane: DataPlane,
    settings: ServingSettings,
    parser: BodyParser | None = None,
    monitor: MonitorSettings | None = None,
) -> ASGIApp:
    """The REST adapter as one ASGI app: request context -> hot path -> FastAPI.

    ``parser`` parses big JSON bodies in a helper process: its owner closes it. With
    ``monitor.ui`` the read-only page ``/ui`` is served (:mod:`visionyard.serving.rest.ui`)."""
    parser = parser or BodyParser()
    app = FastAPI(title="visionyard", version=__version__, docs_url=None, redoc_url=None)
    app.add_exception_handler(VisionyardError, _error)  # type: ignore[arg-type]

    async def bug(request: Request, exc: Exception) -> Response:
        """Any other exception (Starlette then re-raises it: the request context middleware
        swallows it, so that uvicorn does not log it a second time)."""
        return _response(internal_reply(plane, request.scope, exc))

    app.add_exception_handler(Exception, bug)
    error_handlers(app)
    triton_routes(app, plane, settings)
    _health_routes(app, plane, settings)
    _infer_routes(app, plane, settings, parser)
    _admin_routes(app, plane, settings)
    if monitor is not None and monitor.ui:
        from visionyard.serving.rest.ui import mount_ui

        mount_ui(app, plane, settings, monitor)
    hot = HotPath(app, plane, settings, parser)
    return RequestContextMiddleware(hot, max_body_bytes=settings.max_body_bytes)


async def _error(request: Request, exc: VisionyardError) -> Response:
    return _response(error_reply(exc))


def _response(reply: Reply) -> Response:
    return Response(reply.body, reply.status, reply.headers, media_type=reply.content_type)


def _health_routes(app: FastAPI, plane: DataPlane, settings: ServingSettings) -> None:
    @app.get("/v2/health/live")
    async def live() -> JSONResponse:
        return JSONResponse({"live": plane.live()})

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        is_ready = plane.ready()
        return JSONResponse({"ready": is_ready}, 200 if is_ready else 503)

    @app.get("/v2")
    async def server_metadata() -> JSONResponse:
        meta = plane.server_metadata()
        return JSONResponse(
            {"name": meta.name, "version": meta.version, "extensions": meta.extensions}
        )

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> JSONResponse:
        is_ready = plane.model_ready(name, version)
        return JSONResponse({"name": name, "ready": is_ready}, 200 if is_ready else 503)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(
        request: Request, name: str, version: str | None = None
    ) -> JSONResponse:
        check_inference(settings.inference_token, request.headers.get("authorization"))
        meta = plane.model_metadata(name, version)
        return JSONResponse(
            {
                "name": meta.name,
                "versions": meta.versions,
                "platform": meta.platform,
                "inputs": [_spec(s) for s in meta.inputs],
                "outputs": [_spec(s) for s in meta.outputs],
                "parameters": meta.parameters,
                "contract": meta.parameters.get("contract"),
            }
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(plane.metrics.render(), media_type=CONTENT_TYPE)


def _infer_routes(
    app: FastAPI, plane: DataPlane, settings: ServingSettings, parser: BodyParser
) -> None:
    """Documented here; :class:`HotPath` serves them (FastAPI only sees multipart uploads)."""

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        state = request.scope.setdefault("state", {})
        authorize(plane, settings, state, name, request.headers, version)
        body = await request.body()
        check_declared_size(plane, settings, name, version, len(body))
        reply = await infer_reply(plane, parser, state, (name, version, request.headers), body)
        return _response(reply)

    @app.post("/v1/models/{name}:predict")
    async def predict(request: Request, name: str) -> Response:
        state = request.scope.setdefault("state", {})
        authorize(plane, settings, state, name, request.headers)
        images = await read_images(request)
        return _response(await predict_reply(plane, state, name, images, request.headers))


def _admin_routes(app: FastAPI, plane: DataPlane, settings: ServingSettings) -> None:
    pool = plane.pool

    def admin(request: Request) -> None:
        check_admin(settings.admin_token, request.headers.get("authorization"))

    @app.post("/v2/repository/index")
    async def index(request: Request) -> JSONResponse:
        """Triton's body ``{"ready": true}`` lists only the ready models."""
        admin(request)
        body = await request.body()
        ready = bool(body.strip()) and _json_object(body).get("ready") is True
        return JSONResponse(repository.index(pool, ready))

    @app.post("/v2/repository/models/{name}/load")
    async def load(request: Request, name: str) -> JSONResponse:
        admin(request)
        return JSONResponse(await repository.load(pool, name))

    @app.post("/v2/repository/models/{name}/unload")
    async def unload(request: Request, name: str) -> JSONResponse:
        admin(request)
        return JSONResponse(await repository.unload(pool, name))

    @app.get("/v2/models/{name}/monitor")
    async def monitor(request: Request, name: str) -> JSONResponse:
        admin(request)
        return JSONResponse(await monitor_report(plane, name))

    @app.get("/v2/models/{name}/monitor/window")
    async def monitor_window(request: Request, name: str) -> Response:
        admin(request)
        model = plane.pool.current(name)
        if model.monitor is None:
            off = "monitoring is off (monitor.enabled = false): there is no window to save"
            return JSONResponse({"error": off}, status_code=409)
        await model.batcher.settled()  # requests answered before this one are in the window
        data = await asyncio.to_thread(model.monitor.monitor.saved)
        filename = f"{name}-{model.version}-window.npz"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        return Response(data, media_type="application/octet-stream", headers=headers)

    @app.post("/admin/reload")
    async def reload(request: Request) -> JSONResponse:
        admin(request)
        swapped = await pool.refresh_all(force=True)
        return JSONResponse(
            {n: {**index_row(pool.entry(n)), "swapped": s} for n, s in swapped.items()}
        )


async def monitor_report(plane: DataPlane, name: str) -> dict[str, Any]:
    """The serving version's window against its reference, compared now (off the loop)."""
    model = plane.pool.current(name)
    if model.monitor is None:
        off = "monitoring is off (monitor.enabled = false)"
        return {"model": name, "version": model.version, "enabled": False, "message": off}
    await model.batcher.settled()  # requests answered before this one are in the window
    return await asyncio.to_thread(model.monitor.monitor.refresh)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"the body is not JSON: {json_problem(exc)}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError('the body must be a JSON object such as {"ready": true}')
    return value


def _spec(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}
