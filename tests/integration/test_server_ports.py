"""A port already in use: the server refuses to start with one line naming the port and its
setting (``visionyard serve`` exits with the config code, no traceback) and leaves nothing
bound; a gRPC port held by another server (which, like grpc, binds with SO_REUSEPORT) is
refused too instead of being shared, which would split that server's traffic."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fixtures.runtime import write_colour_bundle
from tests.fixtures.serving import server
from visionyard.errors import ConfigError
from visionyard.serving.sources import LocalBundleSource

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_bundle(tmp_path_factory.mktemp("ports") / "colour").path


@contextmanager
def listener(*, reuseport: bool = False) -> Iterator[int]:
    """A real listening socket on a free loopback port (``reuseport``: bound the way a grpc
    server binds its port); yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((HOST, 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _released(port: int) -> bool:
    """Nothing listens on ``port`` (bound plainly: no SO_REUSEADDR/SO_REUSEPORT to share it)."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "reuseport"])
def test_a_grpc_port_in_use_is_refused_and_the_http_port_released(
    bundle: Path, reuseport: bool
) -> None:
    http_port = _free_port()
    with listener(reuseport=reuseport) as grpc_port:
        sources = {"c": LocalBundleSource(bundle)}
        with (
            pytest.raises(ConfigError) as info,
            server(sources, host=HOST, http_port=http_port, grpc_port=grpc_port),
        ):
            pytest.fail("the server started on a gRPC port already in use")
    assert str(info.value).startswith(
        f"gRPC port {grpc_port} (serving.grpc_port) is already in use"
    )
    assert _released(http_port), "the HTTP port stayed bound after the failed start"


def test_an_http_port_in_use_is_refused_and_the_grpc_port_left_free(bundle: Path) -> None:
    grpc_port = _free_port()
    with listener() as http_port:
        sources = {"c": LocalBundleSource(bundle)}
        with (
            pytest.raises(ConfigError) as info,
            server(sources, host=HOST, http_port=http_port, grpc_port=grpc_port),
        ):
            pytest.fail("the server started on an HTTP port already in use")
    assert str(info.value).startswith(
        f"HTTP port {http_port} (serving.http_port) is already in use"
    )
    assert _released(grpc_port)


def test_a_second_server_cannot_share_the_grpc_port_of_a_running_one(bundle: Path) -> None:
    sources = {"c": LocalBundleSource(bundle)}
    with server(sources, host=HOST) as first:
        grpc_port = int(first.grpc_target.rsplit(":", 1)[1])
        with (
            pytest.raises(ConfigError, match=f"gRPC port {grpc_port} .* already in use"),
            server(sources, host=HOST, grpc_port=grpc_port),
        ):
            pytest.fail("a second server shares the gRPC port of a running one")


@pytest.mark.parametrize("protocol", ["HTTP", "gRPC"])
def test_serve_on_a_port_in_use_says_one_line_and_exits_with_the_config_code(
    bundle: Path, tmp_path: Path, protocol: str
) -> None:
    with listener(reuseport=protocol == "gRPC") as taken:
        ports = {"HTTP": "0", "gRPC": "0", protocol: str(taken)}
        command = [sys.executable, "-c", "from visionyard.cli.main import run; run()", "serve",
                   "--host", HOST, "--http-port", ports["HTTP"], "--grpc-port", ports["gRPC"],
                   "--model", f"c={bundle}"]  # fmt: skip
        base = {k: v for k, v in os.environ.items() if not k.startswith("VISIONYARD_")}
        env = {**base, "VISIONYARD_HOME": str(tmp_path / "home")}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 3, done.stderr  # config.invalid
    assert "serving http=" not in done.stdout
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if not _is_json(line)]
    setting = "serving.http_port" if protocol == "HTTP" else "serving.grpc_port"
    assert len(said) == 1, done.stderr
    assert said[0].startswith(f"error: {protocol} port {taken} ({setting}) is already in use")


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
