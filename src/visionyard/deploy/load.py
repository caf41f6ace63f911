"""Closed-loop load over a lean HTTP/1.1 client: what ``deploy plan`` and ``bench/`` drive a
server with.

Written by hand because the client must cost the server it measures as little CPU as possible
(they share the machine): each client thread keeps one keep-alive connection and sends requests
built once up front in ONE ``sendall`` (TCP_NODELAY), then reads the answer with a small
HTTP/1.1 parser; httpx per request costs several times more CPU. The client's own CPU use is
measured and reported (``client_cpu``: cores busy in this process).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

#: One thread's sender: request number -> the response body on success, None on failure.
Sender = Callable[[int], bytes | None]
#: Makes one sender per client thread (its own connection).
Connect = Callable[[], Sender]


def http_request(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One prebuilt ``POST path`` with ``body`` (HTTP/1.1, keep-alive)."""
    host = urlsplit(url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_client(url: str, requests: Sequence[bytes]) -> Connect:
    """Raw HTTP/1.1 keep-alive client over prebuilt ``requests`` (see :func:`http_request`)."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    return lambda: _HttpSender(address, requests)


class _HttpSender:
    """One connection's sender (:data:`Sender`); ``close()`` ends its connection."""

    def __init__(self, address: tuple[str, int], requests: Sequence[bytes]) -> None:
        self.address, self.requests = address, requests
        self.sock: socket.socket | None = None
        self.file: Any = None

    def __call__(self, i: int) -> bytes | None:
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.address)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.file = self.sock.makefile("rb")
            self.sock.sendall(self.requests[i % len(self.requests)])
            return _read_response(self.file)
        except (OSError, ValueError):
            self.close()
            return None

    def close(self) -> None:
        if self.sock is not None:
            self.file.close()
            self.sock.close()
            self.sock = self.file = None


def _read_response(file: Any) -> bytes | None:
    status = file.readline()
    if not status:
        raise OSError("connection closed")
    length, chunked, close = 0, False, False
    while (line := file.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    body = _read_chunked(file) if chunked else file.read(length)
    if close:
        raise OSError("server closed the connection")  # the caller reconnects
    return body if status.split(b" ", 2)[1] == b"200" else None


def _read_chunked(file: Any) -> bytes:
    parts = []
    while size := int(file.readline().split(b";")[0], 16):
        parts.append(file.read(size))
        file.readline()
    file.readline()
    return b"".join(parts)


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds of ``latencies`` (seconds); NaN when there are none."""
    if not latencies:
        return {"p50": float("nan"), "p99": float("nan")}
    ms = np.asarray(latencies) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def closed_loop(
    connect: Connect, clients: int, seconds: float, stop: threading.Event | None = None
) -> dict[str, Any]:
    """``clients`` threads, each sending its next request when the last one returns.

    Returns ``rate`` (answers/s), ``failures``, ``requests``, ``client_cpu``, ``p50``, ``p99``.
    """
    latencies: list[float] = []
    failures = [0]
    deadline = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        send, i = connect(), offset
        while time.perf_counter() < deadline and not (stop and stop.is_set()):
            began = time.perf_counter()
            ok = send(i) is not None
            latencies.append(time.perf_counter() - began)
            failures[0] += 0 if ok else 1
            i += clients
        close = getattr(send, "close", None)
        if close is not None:
            close()

    cpu, started = time.process_time(), time.perf_counter()
    run_threads(worker, clients)
    elapsed = time.perf_counter() - started
    return {
        "rate": (len(latencies) - failures[0]) / elapsed,
        "failures": failures[0],
        "requests": len(latencies),
        "client_cpu": (time.process_time() - cpu) / elapsed,
        "client": "python",
        **percentiles(latencies),
    }


def run_threads(worker: Callable[[int], None], count: int) -> None:
    """Run ``worker(0..count-1)`` on ``count`` threads and wait for all of them."""
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
