"""tritonclient[http,grpc]==2.73.0 runs health, metadata and infer against both protocols."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.runtime import write_colour_bundle
from tests.fixtures.serving import server
from visionyard.serving.app import RunningServer
from visionyard.serving.sources import LocalBundleSource

SCRIPT = Path(__file__).with_name("triton_client_check.py")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    bundle = write_colour_bundle(tmp_path_factory.mktemp("interop") / "colour")
    with server({"colour": LocalBundleSource(bundle.path)}) as srv:
        yield srv


def test_tritonclient_http_and_grpc(running: RunningServer) -> None:
    http = running.http_url.removeprefix("http://")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), http, running.grpc_target],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "ok http fp32 binary=False" in lines
    assert "ok http images binary=True" in lines
    assert "ok grpc images binary=True" in lines
    assert lines[-1] == "all ok"
