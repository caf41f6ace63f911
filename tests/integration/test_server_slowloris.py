"""Slow or idle clients cannot hold the REST port: a request head must arrive within
``serving.header_timeout_s`` and connections past ``serving.max_connections`` are refused at
once, while keep-alive clients and slow uploads (a body streaming in) are served as before."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.runtime import write_colour_bundle
from tests.fixtures.serving import server
from visionyard.serving.app import RunningServer
from visionyard.serving.sources import LocalBundleSource

PARTIAL = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"  # no blank line: the head never ends
LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> LocalBundleSource:
    root = tmp_path_factory.mktemp("slowloris")
    return LocalBundleSource(write_colour_bundle(root / "colour").path)


@pytest.fixture(scope="module")
def running(bundle: LocalBundleSource) -> Iterator[RunningServer]:
    with server({"colour": bundle}, header_timeout_s=0.5) as srv:
        yield srv


def _connect(srv: RunningServer) -> socket.socket:
    url = urlsplit(srv.http_url)
    assert url.hostname is not None
    assert url.port is not None
    return socket.create_connection((url.hostname, url.port), timeout=5)


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``seconds``; None: still open."""
    sock.settimeout(0.1)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and ``Content-Length`` bytes of body)."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data or len(data) < _length(data):
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    return data


def _length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(head) + 4


def test_a_request_head_that_never_ends_is_closed_while_others_are_served(
    running: RunningServer,
) -> None:
    partial, silent = _connect(running), _connect(running)
    with partial, silent:
        partial.sendall(PARTIAL)
        with httpx.Client(base_url=running.http_url, timeout=5) as client:
            assert client.get("/v2/health/live").status_code == 200
        started = time.monotonic()
        assert _closed_within(partial, 5) is not None, "a half-sent head stayed open"
        assert _closed_within(silent, 5) is not None, "a silent connection stayed open"
        assert time.monotonic() - started < 3


def test_keep_alive_and_a_slow_body_outlive_the_header_timeout(running: RunningServer) -> None:
    with _connect(running) as sock:
        sock.sendall(LIVE)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)  # idle between requests: the keep-alive timeout (30 s) applies
        sock.sendall(LIVE)
        assert _response(sock).startswith(b"HTTP/1.1 200")
    body = b'{"inputs": "not a list, sent slowly"}'
    with _connect(running) as sock:
        head = (
            b"POST /v2/models/colour/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(head)
        for start in range(0, len(body), 10):  # the body streams in over ~1.2 s
            time.sleep(0.3)
            sock.sendall(body[start : start + 10])
        assert _response(sock).startswith(b"HTTP/1.1 400")


def test_connections_past_the_cap_are_refused_at_once(bundle: LocalBundleSource) -> None:
    with server({"colour": bundle}, max_connections=4, header_timeout_s=30) as srv:
        idle = [_connect(srv) for _ in range(8)]
        try:
            answers = [_closed_within(sock, 0.5) for sock in idle]
            refused = [a for a in answers if a is not None]
            assert len(refused) == 4, answers
            assert all(a.startswith(b"HTTP/1.1 503") for a in refused), refused
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)  # the server sees the closes
        with httpx.Client(base_url=srv.http_url, timeout=5) as client:
            assert client.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize("sent", [b"", b"PRI * HTTP/2.0\r\n"], ids=["silent", "half-preface"])
def test_a_grpc_connection_that_never_completes_its_handshake_is_closed(
    running: RunningServer, sent: bytes
) -> None:
    host, port = running.grpc_target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as slow:
        slow.sendall(sent)
        assert _closed_within(slow, 5.0) is not None  # header_timeout_s is 0.5 here
