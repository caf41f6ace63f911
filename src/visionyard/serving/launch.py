"""Start ``visionyard serve`` as a child process and get its URLs (quickstart, e2e tests).

The child binds the ports it is given (0: any free one) and prints one line
``serving http=URL grpc=HOST:PORT`` on stdout once both protocols answer and every model is
loaded; :func:`serve_subprocess` waits for that line, yields the addresses and stops the child
(SIGTERM, then SIGKILL) on exit. Its JSON logs go to ``log_path`` (or are discarded).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from visionyard.errors import VisionyardError
from visionyard.serving.app import Addresses

_READY = re.compile(r"^serving http=(?P<http>\S+) grpc=(?P<grpc>\S+)$")


@contextlib.contextmanager
def serve_subprocess(
    models: Mapping[str, str],
    *,
    args: Sequence[str] = (),
    serve_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout_s: float = 120.0,
) -> Iterator[Addresses]:
    """Run ``visionyard [args] serve --model NAME=REF ... --http-port 0 --grpc-port 0
    [serve_args]``."""
    command = [
        sys.executable,
        "-c",
        "from visionyard.cli.main import run; run()",
        *args,
        "serve",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
    ]
    for name, reference in models.items():
        command += ["--model", f"{name}={reference}"]
    command += serve_args
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        yield _wait_ready(child, timeout_s)
    finally:
        _stop(child)
        if log_path:
            log.close()  # type: ignore[union-attr]


def _wait_ready(child: subprocess.Popen[str], timeout_s: float) -> Addresses:
    deadline = time.monotonic() + timeout_s
    assert child.stdout is not None
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line and child.poll() is not None:
            raise VisionyardError(f"visionyard serve exited with code {child.returncode}")
        match = _READY.match(line.strip())
        if match:
            return Addresses(match["http"], match["grpc"], child.pid)
    raise VisionyardError(f"visionyard serve did not start within {timeout_s:.0f}s")


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
    if child.stdout is not None:
        child.stdout.close()
