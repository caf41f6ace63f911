"""A pinned variant (``serving.variant`` / ``serve --variant``): what is served, and the refusal
of a version that lacks it (the server stays up; an older version keeps serving).

Real ``visionyard serve`` processes on loopback, and one in-process server for the hot swap.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.fixtures.runtime import COLOURS, colour_classifier_onnx, write_colour_bundle
from tests.fixtures.serving import ADMIN_TOKEN, MovableSource, encoded, server
from visionyard.deploy import spec
from visionyard.serving.launch import serve_subprocess
from visionyard.serving.sources import LocalBundleSource
from visionyard.settings import Settings, load_settings

#: The int8 variant passed its checks and is faster: the unpinned choice.
REPORTS = {"int8": {"passed": True, "latency_p50_ms": 1.0}, "fp32": {"passed": True}}
RED = encoded(COLOURS["red"])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``with-int8``: fp32 + a passed, faster int8; ``fp32-only``: no variant."""
    root = tmp_path_factory.mktemp("variants")
    both = write_colour_bundle(
        root / "with-int8",
        variants={"int8": colour_classifier_onnx(sharpness=5.0)},
        metadata={"variant_reports": REPORTS},
    )
    return {"with-int8": both.path, "fp32-only": write_colour_bundle(root / "fp32-only").path}


def served_variant(http_url: str, name: str) -> tuple[str, str]:
    """The variant in the model's metadata, and the one ``visionyard_model_info`` labels."""
    meta = httpx.get(f"{http_url}/v2/models/{name}", timeout=30).json()
    metrics = httpx.get(f"{http_url}/metrics", timeout=30).text
    line = re.search(rf'visionyard_model_info{{[^}}]*model="{name}"[^}}]*}} 1\.0', metrics)
    assert line is not None, metrics
    label = re.search(r'variant="([^"]*)"', line.group(0))
    assert label is not None
    return meta["parameters"]["variant"], label.group(1)


def test_default_serves_the_fastest_that_passed_and_the_flag_pins_fp32(
    bundles: dict[str, Path],
) -> None:
    with server({"c": LocalBundleSource(bundles["with-int8"])}) as running:  # in-process
        assert served_variant(running.http_url, "c") == ("int8", "int8")
    models = {"c": str(bundles["with-int8"])}
    with serve_subprocess(models, serve_args=["--variant", "fp32"]) as urls:
        assert served_variant(urls.http_url, "c") == ("fp32", "fp32")
        answer = httpx.post(f"{urls.http_url}/v1/models/c:predict", content=RED, timeout=30)
        assert answer.json()["predictions"][0][0]["label"] == "red"


def test_a_version_without_the_pinned_variant_is_refused_and_the_server_stays_up(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    models = {"a": str(bundles["with-int8"]), "b": str(bundles["fp32-only"])}
    with serve_subprocess(models, serve_args=["--variant", "int8"], log_path=log) as urls:
        http = urls.http_url
        assert served_variant(http, "a") == ("int8", "int8")
        assert httpx.get(f"{http}/v2/models/b/ready", timeout=30).status_code == 503
        meta = httpx.get(f"{http}/v2/models/b", timeout=30).json()["parameters"]
        assert meta["state"] == "failed"
        assert "variant 'int8' not found; version 1 has only: fp32" in meta["last_error"]
        assert httpx.get(f"{http}/v2/health/live", timeout=30).status_code == 200
        answer = httpx.post(f"{http}/v1/models/a:predict", content=RED, timeout=30)
        assert answer.status_code == 200
        refused = httpx.post(f"{http}/v1/models/b:predict", content=RED, timeout=30)
        assert refused.status_code == 503
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    refusals = [x for x in lines if x.get("level") == "error" and x.get("model") == "b"]
    assert len(refusals) == 1, refusals
    assert "has only: fp32" in refusals[0]["error"]
    assert "serving.variant (--variant) pins 'int8'" in refusals[0]["error"]
    assert "no version is serving" in refusals[0]["message"]


def test_a_new_version_without_the_pinned_variant_leaves_the_old_one_serving(
    bundles: dict[str, Path],
) -> None:
    source = MovableSource("1", bundles["with-int8"])
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        server({"m": source}, variant="int8") as running,
        httpx.Client(base_url=running.http_url, timeout=30) as http,
    ):
        assert served_variant(running.http_url, "m") == ("int8", "int8")
        source.move("2", bundles["fp32-only"])
        refused = http.post("/v2/repository/models/m/load", headers=auth)  # a failed load
        assert refused.status_code == 404, refused.text
        assert "version 2 has only: fp32" in refused.json()["error"]
        meta = http.get("/v2/models/m").json()
        assert meta["versions"] == ["1"]
        assert meta["parameters"]["variant"] == "int8"
        assert "version 2 has only: fp32" in meta["parameters"]["last_error"]
        answer = http.post("/v1/models/m:predict", content=RED).json()
        assert answer["model_version"] == "1"


def test_the_setting_comes_from_the_environment_and_flows_into_deploy_files(
    tmp_path: Path,
) -> None:
    loaded = load_settings(environ={"VISIONYARD_SERVING__VARIANT": "fp32"}).settings
    assert loaded.serving.variant == "fp32"
    assert Settings().serving.variant is None
    pinned = Settings(serving={"http_port": 9100, "grpc_port": 9101, "variant": "int8"})
    serve_yaml = tmp_path / "serve.yaml"
    serve_yaml.write_text(spec.serve_yaml(pinned, {"m": "m@production"}))
    assert load_settings(serve_yaml, environ={}).settings.serving.variant == "int8"
    unpinned = Settings(serving={"http_port": 9100, "grpc_port": 9101})
    assert "variant" not in spec.serve_yaml(unpinned, {"m": "m@production"})
