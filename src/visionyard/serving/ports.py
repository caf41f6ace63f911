"""The server's two ports: one that cannot be bound (in use, refused) is one line naming the
port and its setting (``visionyard serve`` prints it and exits with the config code), not a
traceback.

The gRPC port is tried first with a socket of our own: grpc's own failure says only "Failed to
bind" (and its C core prints a line of its own to stderr). grpc binds with SO_REUSEPORT unless
told not to (:func:`~visionyard.serving.grpc.server.create_grpc_server` tells it): otherwise a
second server would share a port already in use and take part of the first one's connections.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

import grpc

from visionyard.errors import ConfigError

#: The setting and the ``visionyard serve`` flag of each port.
_PORTS = {
    "HTTP": ("serving.http_port", "--http-port"),
    "gRPC": ("serving.grpc_port", "--grpc-port"),
}


@contextlib.contextmanager
def port_errors(protocol: str, host: str, port: int) -> Iterator[None]:
    """An ``OSError`` while binding ``protocol``'s port becomes one :class:`ConfigError`."""
    try:
        yield
    except OSError as exc:
        raise port_error(protocol, host, port, exc) from exc


def add_grpc_port(server: grpc.aio.Server, host: str, port: int) -> int:
    """Bind the gRPC port; the port bound (the one chosen when ``port`` is 0)."""
    if port:
        with port_errors("gRPC", host, port):
            _probe(host, port)
    try:
        bound: int = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # taken since the probe, or refused for another reason
        raise port_error("gRPC", host, port, OSError(0, "grpc cannot bind it")) from exc
    return bound


def port_error(protocol: str, host: str, port: int, exc: OSError) -> ConfigError:
    setting, flag = _PORTS[protocol]
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"{protocol} port {port} ({setting}) is already in use on {host}: stop what "
            f"listens there or choose another port ({flag})"
        )
    return ConfigError(
        f"cannot listen on {protocol} port {port} ({setting}) on {host} (serving.host): "
        f"{exc.strerror or exc}"
    )


def _probe(host: str, port: int) -> None:
    """Bind ``host:port`` as grpc will (SO_REUSEADDR, no SO_REUSEPORT), then let it go."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
