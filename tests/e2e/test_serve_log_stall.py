"""``visionyard serve`` whose stderr nobody reads (a log shipper that stalled, a pipe to a
process that hung): the log lines queue and then drop, the server keeps answering, and once the
stream is read again it says how many lines it dropped."""

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
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.fixtures.runtime import write_colour_bundle
from visionyard.serving.launch import Addresses, _stop, _wait_ready

pytestmark = pytest.mark.slow

#: more access lines than a pipe's buffer (64 KiB) holds: ~250 bytes a line
REQUESTS = 400


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (0, 0, 255)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_a_log_stream_nobody_reads_does_not_stall_the_server(tmp_path: Path) -> None:
    bundle = write_colour_bundle(tmp_path / "colour")
    command = [sys.executable, "-c", "from visionyard.cli.main import run; run()", "serve",
               "--http-port", "0", "--grpc-port", "0",
               "--model", f"colour={bundle.path}"]  # fmt: skip
    env = {**os.environ, "VISIONYARD_SERVING__LOG_QUEUE_LINES": "100"}
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stderr or ()), daemon=True)
    try:
        urls = _wait_ready(child, 120)
        image = _jpeg()
        with httpx.Client(base_url=urls.http_url, timeout=10) as http:
            for i in range(REQUESTS):
                rid = f"stalled-log-{i:04d}-" + "x" * 80
                answer = http.post(
                    "/v1/models/colour:predict", content=image, headers={"X-Request-ID": rid}
                )
                assert answer.status_code == 200, answer.text
            assert http.get("/v2/health/live").status_code == 200
            # the stream is read again: the lines queued so far come out, then the count of
            # the ones dropped meanwhile (after the next line logged)
            reader.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any("dropped" in x for x in lines):
                http.post("/v1/models/colour:predict", content=image)
                time.sleep(0.2)
    finally:
        _stop(child)
        if reader.ident is not None:  # started
            reader.join(10)
        assert child.stderr is not None
        child.stderr.close()
    records = [json.loads(line) for line in lines if line.strip()]  # every line whole JSON
    dropped = [r for r in records if "dropped" in r["message"]]
    assert dropped, "no line says how many were dropped"
    assert dropped[0]["level"] == "warning"
    count = dropped[0]["dropped_lines"]
    kept = [r for r in records if str(r.get("request_id", "")).startswith("stalled-log-")]
    assert count > 0
    assert len(kept) + count >= REQUESTS  # each access line is written or counted
    assert len(kept) < REQUESTS


@contextmanager
def _unread_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Addresses]]:
    """A server whose stderr is a pipe nobody reads, after more access lines than it holds."""
    bundle = write_colour_bundle(tmp_path / "colour")
    command = [sys.executable, "-c", "from visionyard.cli.main import run; run()", "serve",
               "--http-port", "0", "--grpc-port", "0",
               "--model", f"colour={bundle.path}"]  # fmt: skip
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        urls = _wait_ready(child, 120)
        image = _jpeg()
        with httpx.Client(base_url=urls.http_url, timeout=10) as http:
            for i in range(REQUESTS):
                rid = f"blocked-{i:04d}-" + "x" * 80
                answer = http.post(
                    "/v1/models/colour:predict", content=image, headers={"X-Request-ID": rid}
                )
                assert answer.status_code == 200, answer.text
        yield child, urls
    finally:
        _stop(child)
        assert child.stderr is not None
        child.stderr.close()


def test_a_server_whose_log_stream_is_blocked_still_stops(tmp_path: Path) -> None:
    """SIGTERM: the server exits at once with code 0, although its log writer is stuck in a
    write (the interpreter's exit must not wait on it)."""
    with _unread_server(tmp_path) as (child, _):
        began = time.monotonic()
        child.send_signal(signal.SIGTERM)
        try:
            code = child.wait(15)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"still running {time.monotonic() - began:.0f}s after SIGTERM"
