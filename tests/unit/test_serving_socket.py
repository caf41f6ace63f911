"""The REST listening socket turns Nagle off for the connections it accepts."""

from __future__ import annotations

import socket

from visionyard.serving.app import _bind


def test_accepted_connections_have_tcp_nodelay() -> None:
    listener = _bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP  # what asyncio checks before its own NODELAY
        client = socket.create_connection(listener.getsockname()[:2])
        listener.setblocking(True)
        accepted, _ = listener.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()
