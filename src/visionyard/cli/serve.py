"""``visionyard serve``: serve models over REST and gRPC (Open Inference Protocol v2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from visionyard.cli.console import app_context
from visionyard.errors import ConfigError

#: Seconds past ``serving.drain_s`` that closing up (listeners, models, monitoring) may take.
STOP_MARGIN_S = 2.0


def serve(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="Settings file (YAML/TOML)."),
    model: list[str] = typer.Option(
        [], "--model", "-m", help="NAME=REF: a bundle path, NAME@alias or NAME/3 (repeatable)."
    ),
    host: str | None = typer.Option(None, "--host", help="Interface to bind."),
    http_port: int | None = typer.Option(None, "--http-port", help="REST port (0: any free)."),
    grpc_port: int | None = typer.Option(None, "--grpc-port", help="gRPC port (0: any free)."),
    ui: bool | None = typer.Option(
        None, "--ui/--no-ui", help="Serve the read-only web page /ui (monitor.ui)."
    ),
    variant: str | None = typer.Option(
        None,
        "--variant",
        help="Serve this variant (fp32, int8, fp16) instead of the fastest that passed "
        "(serving.variant); a version without it is refused.",
    ),
) -> None:
    """Serve models (registry references or bundle paths); stop with Ctrl-C."""
    import asyncio

    from visionyard.serving.logs import configure_logging
    from visionyard.serving.sources import parse_model_option
    from visionyard.settings import load_settings

    root = app_context(ctx)
    models = dict(parse_model_option(option) for option in model)
    flags: dict[str, Any] = {
        "home": ctx.find_root().params.get("home"),
        "tracking.uri": ctx.find_root().params.get("tracking_uri"),
        "serving.host": host,
        "serving.http_port": http_port,
        "serving.grpc_port": grpc_port,
        "serving.models": models or None,
        "monitor.ui": ui,
        "serving.variant": variant,
    }
    settings = load_settings(config or root.loaded.config_file, flags).settings
    if not settings.serving.models:
        raise ConfigError("no models to serve: pass --model NAME=REF or set serving.models")
    configure_logging(settings.log_level, queue_lines=settings.serving.log_queue_lines)
    asyncio.run(_serve(settings))


async def _serve(settings: Any) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then drain and stop. Stdout gets one line, the
    addresses; stderr only JSON log lines (:mod:`visionyard.serving.logs`)."""
    import asyncio
    import logging
    import signal

    from visionyard.serving.app import Server

    log = logging.getLogger("visionyard.serving")
    log.info("starting", extra={"fields": {"models": dict(settings.serving.models)}})
    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _signalled(stop, sig, log))
    addresses = await server.start()
    print(f"serving http={addresses.http_url} grpc={addresses.grpc_target}", flush=True)
    serving = settings.serving
    fields = {"http": addresses.http_url, "grpc": addresses.grpc_target,
              "models": server.pool.names, "variant": serving.variant,
              "ui": f"{addresses.http_url}/ui" if settings.monitor.ui else None,
              "admin_calls": serving.admin_token is not None}  # fmt: skip
    log.info("serving; Ctrl-C to stop", extra={"fields": fields})
    if serving.admin_token is None:
        log.info("admin calls disabled: no serving.admin_token (VISIONYARD_SERVING__ADMIN_TOKEN)")
    await stop.wait()
    await _stop(server, serving.drain_s)


def _signalled(stop: Any, sig: Any, log: Any) -> Any:
    def handler() -> None:
        log.info("stop requested", extra={"fields": {"signal": sig.name}})
        stop.set()

    return handler


async def _stop(server: Any, drain_s: float) -> None:
    """Drain and stop within ``drain_s`` (+ a margin to close up); past that, exit anyway:
    worker threads still decoding a cut-off request would otherwise hold the process."""
    import asyncio
    import os
    import sys

    try:
        await asyncio.wait_for(server.stop(drain_s), drain_s + STOP_MARGIN_S)
    except TimeoutError:
        import logging

        seconds = drain_s + STOP_MARGIN_S
        logging.getLogger("visionyard.serving").error(
            f"not stopped {seconds:g}s after the signal: exiting now"
        )
        sys.stdout.flush()
        for handler in logging.getLogger().handlers:
            handler.flush()  # the log thread's lines (a blocked stream: at most its wait)
        sys.stderr.flush()
        os._exit(0)
