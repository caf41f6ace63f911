"""The REST listener's defences against clients that hold connections: uvicorn's HTTP protocol
with a request-head timeout and a connection cap, and quiet accept errors.

uvicorn times a connection only between requests (``timeout_keep_alive``): one that has sent
half a request head, or nothing, stays open for good, and enough of them exhaust the process's
file descriptors (slowloris). So:

- **head timeout** (``serving.header_timeout_s``): from the connection, or from the first byte
  of each further request on it, the whole head (request line and headers) must arrive within
  it, else the connection is closed. The body is not timed (a large upload streams at the
  client's pace), nor is the time between requests (keep-alive);
- **connection cap** (``serving.max_connections``, lowered by :func:`connection_cap` to leave
  file descriptors for the models, gRPC and logs): a connection past it is answered 503 and
  closed at once, so the listener never runs out of descriptors on its own;
- **accept errors**: should the process run out of descriptors anyway (gRPC, other files),
  Python 3.11's asyncio logs ``socket.accept() out of system resource`` up to once per queued
  connection, over and over (94 MB of log in 40 s was measured); :func:`quiet_accept_errors`
  lets one such line through a minute, with how many were held back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("visionyard.serving")
ACCEPT_ERROR = "socket.accept() out of system resource"
QUIET_S = 60.0  # one accept-error line (and one refused-connections line) per this, at most
#: file descriptors kept for everything but REST connections (models, gRPC, logs, the helper)
RESERVED_FDS = 256


def connection_cap(max_connections: int, open_files: int | None = None) -> int:
    """``max_connections``, lowered to leave :data:`RESERVED_FDS` (or half the
    process's open-file limit, whichever is less) to the rest of the server."""
    if open_files is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        open_files = soft if soft != resource.RLIM_INFINITY else 1 << 20
    spare = min(RESERVED_FDS, open_files // 2)
    return min(max_connections, max(16, open_files - spare))


def protocol_class(header_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with these limits (``uvicorn.Config(http=...)``)."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_s = 15.0
    max_connections = 1000
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse()
            return
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a further request on a kept-alive connection
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self) -> None:
        body = json.dumps(
            {
                "error": f"too many connections (serving.max_connections = "
                f"{self.max_connections}); retry later",
                "code": "serving.busy",
            }
        ).encode()
        head = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        self.transport.write(head + body)
        self.transport.close()
        _REFUSED.note(self.max_connections)


class _Quiet:
    """Counts an event; logs it at most once per :data:`QUIET_S` with the count since."""

    def __init__(self) -> None:
        self.last = -QUIET_S
        self.held = 0

    def due(self) -> int | None:
        """How many were held back before this one, when this one is to be logged."""
        now = time.monotonic()
        if now - self.last < QUIET_S:
            self.held += 1
            return None
        held, self.held, self.last = self.held, 0, now
        return held

    def note(self, cap: int) -> None:
        held = self.due()
        if held is not None:
            fields = {"max_connections": cap, "refused_before": held}
            log.warning("too many REST connections: refusing more", extra={"fields": fields})


_REFUSED = _Quiet()


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Let through one ``socket.accept() out of system resource`` a :data:`QUIET_S` on
    ``loop`` (with the count held back); every other error goes to the previous handler."""
    previous = loop.get_exception_handler()
    quiet = _Quiet()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_ERROR:
            held = quiet.due()
            if held is None:
                return
            context = {**context, "held_back_since_last": held}
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
