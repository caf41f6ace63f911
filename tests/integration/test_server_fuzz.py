"""Hypothesis fuzzing of the REST API: any body, header or path gets a 2xx/4xx, never a 5xx.

Requests are generated near the OIP v2 schema (valid and invalid names, datatypes, shapes, data,
binary sizes and trailing bytes) so that the fuzzer reaches the deep parsing paths, plus fully
random bytes. A server error or a dead server fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.runtime import write_colour_bundle, write_detector_bundle
from tests.fixtures.serving import encoded, server
from visionyard.serving.app import RunningServer
from visionyard.serving.sources import LocalBundleSource

OK = {200, 400, 401, 404, 405, 413, 503}
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "binary_data_size": st.integers(-5, 1000) | _SCALARS,
        "content_type": st.sampled_from(["base64", "text", ""]),
        "binary_data": st.booleans(),
        "classification": st.integers(-2, 9) | _SCALARS,
    },
)
_INPUT = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "image", "x"]) | _SCALARS,
        "datatype": st.sampled_from(["FP32", "BYTES", "INT8", "FP16", "BOOL", "??"]) | _SCALARS,
    },
    optional={
        "shape": st.lists(st.integers(-1, 9), max_size=4) | _JSON,
        "data": st.lists(st.floats(-10, 10) | st.text(max_size=4), max_size=200) | _JSON,
        "parameters": _PARAMS | _JSON,
    },
)
_BODY = st.fixed_dictionaries(
    {"inputs": st.lists(_INPUT, max_size=3) | _JSON},
    optional={
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["logits", "top_labels", "nope"])},
                optional={"parameters": _PARAMS},
            ),
            max_size=3,
        )
        | _JSON,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans()}),
        "id": _SCALARS,
    },
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("fuzz")
    sources = {
        "colour": LocalBundleSource(write_colour_bundle(root / "colour").path),
        "det": LocalBundleSource(write_detector_bundle(root / "det").path),
    }
    with server(sources, max_body_bytes=200_000) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(running: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.http_url, timeout=30) as http:
        yield http


def _check(client: httpx.Client, response: httpx.Response) -> None:
    assert response.status_code in OK, (response.status_code, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=_BODY,
    tail=st.binary(max_size=64),
    split=st.booleans(),
    model=st.sampled_from(["colour", "det", "nope"]),
)
def test_infer_schema_fuzz(
    client: httpx.Client, body: dict[str, Any], tail: bytes, split: bool, model: str
) -> None:
    header = json.dumps(body).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))} if split else {}
    response = client.post(f"/v2/models/{model}/infer", content=header + tail, headers=headers)
    _check(client, response)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    raw=st.binary(max_size=400),
    header=st.one_of(st.none(), st.text(max_size=6)),
    path=st.sampled_from(
        [
            "/v2/models/colour/infer",
            "/v1/models/colour:predict",
            "/v1/models/det:predict",
            "/v2/models/colour/versions/1/infer",
        ]
    ),
)
def test_random_bytes_fuzz(client: httpx.Client, raw: bytes, header: str | None, path: str) -> None:
    headers = {}
    if (
        header is not None
        and header.isascii()
        and header.isprintable()
        and header == header.strip()
    ):
        # (httpx itself refuses values with surrounding spaces)
        headers["Inference-Header-Content-Length"] = header
    _check(client, client.post(path, content=raw, headers=headers))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    cut=st.integers(0, 600), flip=st.integers(0, 599), fmt=st.sampled_from(["JPEG", "PNG", "WEBP"])
)
def test_damaged_images_fuzz(client: httpx.Client, cut: int, flip: int, fmt: str) -> None:
    image = bytearray(encoded((10, 200, 30), size=(48, 40), fmt=fmt))
    if flip < len(image):
        image[flip] ^= 0xFF
    _check(client, client.post("/v1/models/colour:predict", content=bytes(image[: cut or None])))


def test_server_still_serves_after_fuzzing(client: httpx.Client) -> None:
    assert client.get("/v2/health/ready").status_code == 200
    response = client.post("/v1/models/colour:predict", content=encoded((255, 0, 0)))
    assert response.json()["predictions"][0][0]["label"] == "red"
