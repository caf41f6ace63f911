"""A monitored detector's request decodes its outputs (NMS included) once, not once per reader:
the response, the ``:predict`` results and the monitoring records share one decoding. Before,
a ``:predict`` of a monitored detector ran the contract's decoding three times and a binary
``/infer`` twice (measured: the served/in-process gap of detectors with monitoring on)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.serving import encoded, server
from visionyard.bundle.store import Bundle
from visionyard.runtime import session as runtime_session
from visionyard.serving.app import RunningServer
from visionyard.serving.sources import LocalBundleSource


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the contract decodings run in this process (one entry per call, its images)."""
    seen: list[int] = []
    real = runtime_session.postprocess

    def counting(outputs: Any, contract: Any, metas: Any) -> Any:
        seen.append(len(metas))
        return real(outputs, contract, metas)

    monkeypatch.setattr(runtime_session, "postprocess", counting)
    return seen


@pytest.fixture
def running(detector_bundle: Bundle) -> Iterator[RunningServer]:
    with server({"d": LocalBundleSource(detector_bundle.path)}) as srv:
        yield srv


def test_a_monitored_detector_predict_decodes_once(
    running: RunningServer, calls: list[int]
) -> None:
    with httpx.Client(base_url=running.http_url, timeout=30) as http:
        answer = http.post("/v1/models/d:predict", content=encoded((200, 30, 30), (64, 64)))
    assert answer.status_code == 200, answer.text
    assert "detections" in answer.json()
    assert calls == [1]


def test_a_monitored_detector_binary_infer_decodes_once(
    running: RunningServer, calls: list[int]
) -> None:
    image = encoded((200, 30, 30), (64, 64))
    raw = struct.pack("<I", len(image)) + image
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1],
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = json.dumps({"inputs": [tensor], "outputs": [{"name": "detections"}]}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header)),
               "Content-Type": "application/octet-stream"}  # fmt: skip
    with httpx.Client(base_url=running.http_url, timeout=30) as http:
        answer = http.post("/v2/models/d/infer", content=header + raw, headers=headers)
    assert answer.status_code == 200, answer.text
    assert calls == [1]
