"""``visionyard serve`` whose stderr nobody reads (a log shipper that stalled, a pipe to a
process that hung): the log lines queue and then drop, the server keeps answering, once the
stream is read again it says how many lines it dropped, and SIGTERM still stops it at once."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.fixtures.runtime import write_colour_bundle
from visionyard.serving.launch import _stop, _wait_ready

pytestmark = pytest.mark.slow

#: more access lines than a pipe's buffer (64 KiB) holds: ~250 bytes a line
REQUESTS = 400
IMAGE = io.BytesIO()
Image.new("RGB", (32, 24), (0, 0, 255)).save(IMAGE, "JPEG")


@dataclass
class _Server:
    child: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def read_stderr(self) -> None:
        """From now on, read the server's stderr into :attr:`lines`."""
        stream = self.child.stderr
        assert stream is not None
        self.reader = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.reader.start()


@contextmanager
def _unread_server(tmp_path: Path, env: dict[str, str]) -> Iterator[_Server]:
    """A server whose stderr is a pipe nobody reads, after REQUESTS answered requests (each
    with an access line), more than the pipe holds."""
    bundle = write_colour_bundle(tmp_path / "colour")
    command = [sys.executable, "-c", "from visionyard.cli.main import run; run()", "serve",
               "--http-port", "0", "--grpc-port", "0",
               "--model", f"colour={bundle.path}"]  # fmt: skip
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env}, start_new_session=True,
    )  # fmt: skip
    server = _Server(child, "")
    try:
        server.url = _wait_ready(child, 120).http_url
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for i in range(REQUESTS):
                rid = f"stalled-log-{i:04d}-" + "x" * 80
                answer = http.post(
                    "/v1/models/colour:predict",
                    content=IMAGE.getvalue(),
                    headers={"X-Request-ID": rid},
                )
                assert answer.status_code == 200, answer.text
        yield server
    finally:
        _stop(child)
        if server.reader is not None:
            server.reader.join(10)
        assert child.stderr is not None
        child.stderr.close()


def test_a_log_stream_nobody_reads_does_not_stall_the_server(tmp_path: Path) -> None:
    lines = {"VISIONYARD_SERVING__LOG_QUEUE_LINES": "100"}
    with _unread_server(tmp_path, lines) as server:  # noqa: SIM117 (the client needs its url)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/v2/health/live").status_code == 200
            # the stream is read again: the lines queued so far come out, then the count of
            # the ones dropped meanwhile (after the next line logged)
            server.read_stderr()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any("dropped" in x for x in server.lines):
                http.post("/v1/models/colour:predict", content=IMAGE.getvalue())
                time.sleep(0.2)
    records = [json.loads(line) for line in server.lines if line.strip()]  # all whole JSON
    dropped = [r for r in records if "dropped" in r["message"]]
    assert dropped, "no line says how many were dropped"
    assert dropped[0]["level"] == "warning"
    count = dropped[0]["dropped_lines"]
    kept = [r for r in records if str(r.get("request_id", "")).startswith("stalled-log-")]
    assert count > 0
    assert len(kept) + count >= REQUESTS  # each access line is written or counted
    assert len(kept) < REQUESTS


def test_a_server_whose_log_stream_is_blocked_still_stops(tmp_path: Path) -> None:
    """SIGTERM: the server exits at once with code 0, although its log writer is stuck in a
    write (the interpreter's exit must not wait on it)."""
    with _unread_server(tmp_path, {}) as server:
        began = time.monotonic()
        server.child.send_signal(signal.SIGTERM)
        try:
            code = server.child.wait(15)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"still running {time.monotonic() - began:.0f}s after SIGTERM"
