"""Server assembly: one process, one event loop, REST (uvicorn) and gRPC (grpc.aio) side by side.

:class:`Server` wires settings -> pool -> data plane -> adapters. :func:`running_server` runs one
on a background thread (tests, notebooks, the quickstart) and :func:`serve_subprocess` runs
``visionyard serve`` as a child process; both yield the URLs to call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import threading
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import uvicorn

from visionyard.serving.batching import BatchConfig
from visionyard.serving.dataplane import REPOSITORY, DataPlane
from visionyard.serving.grpc.server import create_grpc_server
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.model import Limits
from visionyard.serving.monitoring import Monitoring
from visionyard.serving.pool import ModelPool, PoolConfig
from visionyard.serving.ports import add_grpc_port, port_errors
from visionyard.serving.rest.connections import connection_cap, protocol_class, quiet_accept_errors
from visionyard.serving.rest.parse import BodyParser
from visionyard.serving.rest.routes import create_rest_app
from visionyard.serving.rollout.wiring import RolloutWiring, follow_rollouts
from visionyard.serving.sources import LocalBundleSource, ModelSource, is_registry_reference
from visionyard.serving.threads import usable_cores
from visionyard.settings import ServingSettings, Settings

log = logging.getLogger("visionyard.serving")
T = TypeVar("T")


@dataclass(frozen=True)
class Addresses:
    http_url: str
    grpc_target: str
    pid: int | None = None  # the server's process, when it runs in a child process


class Server:
    """REST + gRPC over one model pool; ``await start()``, then ``await stop()``.

    ``rollouts`` replaces the registry's rollout core (tests); by default a server follows the
    rollouts of the models it serves by their production alias (:mod:`.rollouts`)."""

    def __init__(
        self,
        settings: Settings,
        sources: Mapping[str, ModelSource] | None = None,
        rollouts: RolloutWiring | None = None,
    ):
        self.settings = settings
        if settings.serving.decode_workers is not None:
            log.warning(
                "serving.decode_workers is deprecated and ignored: each of the "
                "serving.inference_workers threads decodes the images of its own batches"
            )
        self.metrics = ServingMetrics()
        chosen = sources if sources is not None else sources_from_settings(settings)
        self.monitoring = monitoring(settings, self.metrics)
        self.pool = ModelPool(chosen, pool_config(settings), self.metrics, self.monitoring)
        self.plane = DataPlane(self.pool, self.metrics)
        if settings.serving.admin_token is None:  # the repository extension is off
            self.plane.extensions.remove(REPOSITORY)
        self.rollouts = follow_rollouts(settings, chosen, self.plane, self.monitoring, rollouts)
        self.parser = BodyParser()
        self.rest_app = create_rest_app(self.plane, settings.serving, self.parser, settings.monitor)
        self._grpc: grpc.aio.Server | None = None
        self._http: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Addresses:
        """Bind both ports, load every model, start polling sources. A port that cannot be
        bound (in use) is one :class:`~visionyard.errors.ConfigError`, raised before anything
        runs and with nothing left bound (:mod:`.ports`)."""
        serving = self.settings.serving
        with port_errors("HTTP", serving.host, serving.http_port):
            sock = _bind(serving.host, serving.http_port)
        try:
            self._grpc = create_grpc_server(self.plane, serving)
            grpc_port = add_grpc_port(self._grpc, serving.host, serving.grpc_port)
        except BaseException:
            sock.close()
            raise
        self._http = _uvicorn(self.rest_app, serving)
        http_task = asyncio.create_task(_run_uvicorn(self._http, sock))
        self._tasks.append(http_task)
        await self._grpc.start()
        while not self._http.started:
            if http_task.done():
                http_task.result()
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        if self.monitoring is not None:
            self.monitoring.start()
        await self.pool.start()
        self._tasks.append(asyncio.create_task(self.pool.watch(serving.poll_interval_s)))
        if self.rollouts is not None:
            self._tasks.append(asyncio.create_task(self.rollouts.run()))
        host, port = sock.getsockname()[:2]
        return Addresses(f"http://{host}:{port}", f"{serving.host}:{grpc_port}")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Drain, then stop, within about ``grace_s`` seconds (SIGTERM: ``serving.drain_s``).

        Readiness turns 503 and new inference is refused (retryable) at once, while both
        listeners stay open for the requests in flight; then the listeners close and whatever
        is still running gets the rest of ``grace_s``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + grace_s
        self.plane.drain()
        fields = {"in_flight": self.plane.in_flight, "drain_s": grace_s}
        log.info("draining: not ready, finishing requests in flight", extra={"fields": fields})
        if not await self.plane.wait_idle(grace_s):
            log.warning("drain time is up with requests in flight; they are cut off")
        left = max(deadline - loop.time(), 0.1)
        if self._http is not None:
            self._http.config.timeout_graceful_shutdown = math.ceil(left)
            self._http.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(left)
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.rollouts is not None:
            await self.rollouts.close()
        await self.pool.close()
        if self.monitoring is not None:
            await asyncio.to_thread(self.monitoring.close)
        self.parser.close()
        took = {"seconds": round(loop.time() - started, 3)}
        log.info("stopped", extra={"fields": took})


def monitoring(settings: Settings, metrics: ServingMetrics) -> Monitoring | None:
    """The server's live monitoring (``monitor.enabled``), or None."""
    if not settings.monitor.enabled:
        return None
    return Monitoring(settings.monitor, metrics.monitor)


def pool_config(settings: Settings) -> PoolConfig:
    serving = settings.serving
    batch = BatchConfig(
        serving.max_batch_size, serving.max_queue_delay_ms / 1000, serving.inference_workers
    )
    limits = Limits(
        max_pixels=settings.images.max_pixels,
        max_image_bytes=settings.images.max_bytes,
        max_in_flight=serving.max_queue_size,
        retry_after_s=serving.retry_after_s,
    )
    lone = serving.lone_intra_op_threads or usable_cores()
    return PoolConfig(batch, limits, alone_intra_op_threads=lone, variant=serving.variant)


def sources_from_settings(settings: Settings) -> dict[str, ModelSource]:
    """``serving.models``: a bundle path, or a registry reference (``NAME@alias``, ``NAME/3``)."""
    sources: dict[str, ModelSource] = {}
    for name, reference in settings.serving.models.items():
        if is_registry_reference(reference):
            from visionyard.serving.registry_source import RegistrySource

            sources[name] = RegistrySource(reference, settings)
        else:
            sources[name] = LocalBundleSource(Path(reference))
    return sources


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, with TCP_NODELAY for every connection it accepts.

    asyncio turns Nagle off only on sockets whose ``proto`` is ``IPPROTO_TCP``: a socket made
    with proto 0 kept Nagle on, and the response body (written after its headers) waited for
    the client's delayed ACK, ~40 ms per request under load. Linux copies the option to
    accepted sockets.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _uvicorn(app: Any, serving: ServingSettings) -> uvicorn.Server:
    """uvicorn without a logging setup of its own (``log_config=None``): its loggers propagate
    to the JSON handler of :func:`~visionyard.serving.logs.configure_logging`; its access log is
    off, the request context middleware writes the (richer) access lines. Its HTTP protocol
    times request heads and caps connections (:mod:`visionyard.serving.rest.connections`)."""
    cap = connection_cap(serving.max_connections)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        http=protocol_class(serving.header_timeout_s, cap),
    )
    return uvicorn.Server(config)


async def _run_uvicorn(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn's ``serve`` without its signal capture (the caller owns signals)."""
    config = server.config
    if not config.loaded:
        config.load()
    quiet_accept_errors(asyncio.get_running_loop())
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    if not server.should_exit:
        await server.main_loop()
    if server.started:
        await server.shutdown(sockets=[sock])
    sock.close()


class _LoopThread:
    """An event loop on a daemon thread; :meth:`call` runs a coroutine on it and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="vy-serve")
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class RunningServer:
    server: Server
    addresses: Addresses
    _thread: _LoopThread

    @property
    def http_url(self) -> str:
        return self.addresses.http_url

    @property
    def grpc_target(self) -> str:
        return self.addresses.grpc_target

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        """Run a coroutine on the server's loop (e.g. ``server.pool.refresh(name)``)."""
        return self._thread.call(coro, timeout)


@contextlib.contextmanager
def running_server(
    settings: Settings,
    sources: Mapping[str, ModelSource] | None = None,
    *,
    timeout: float = 120,
    rollouts: RolloutWiring | None = None,
) -> Iterator[RunningServer]:
    """Start a server in this process on a background thread; stop it on exit."""
    thread = _LoopThread()
    try:
        server = thread.call(_make(settings, sources, rollouts), timeout)
        addresses = thread.call(server.start(), timeout)
        try:
            yield RunningServer(server, addresses, thread)
        finally:
            thread.call(server.stop(1.0), timeout)
    finally:
        thread.close()


async def _make(
    settings: Settings, sources: Mapping[str, ModelSource] | None, rollouts: RolloutWiring | None
) -> Server:
    return Server(settings, sources, rollouts)
