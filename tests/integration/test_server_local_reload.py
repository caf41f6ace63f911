"""An admin load of a local bundle that is already serving reads it again (as Triton's load
does): a bundle replaced on disk is swapped in, a tampered one is refused and the version that
was serving keeps serving; an unchanged one is not reloaded."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.runtime import colour_classifier_onnx, write_colour_bundle
from tests.fixtures.serving import ADMIN_TOKEN, encoded, server
from tests.registry_support import RED_AS_GREEN
from visionyard.serving.app import RunningServer
from visionyard.serving.sources import LocalBundleSource

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    path = write_colour_bundle(tmp_path / "bundle").path
    with server({"m": LocalBundleSource(path)}) as running:
        yield running, path


def _label(client: httpx.Client) -> str:
    answer = client.post("/v1/models/m:predict", content=encoded("red"))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["predictions"][0][0]["label"])


def _load(client: httpx.Client) -> httpx.Response:
    return client.post("/v2/repository/models/m/load", headers=AUTH)


def test_load_reads_a_replaced_bundle_again_and_refuses_a_tampered_one(
    served: tuple[RunningServer, Path],
) -> None:
    running, path = served
    with httpx.Client(base_url=running.http_url, timeout=30) as client:
        assert _label(client) == "red"
        assert _load(client).json()["swapped"] is False  # unchanged: not read again
        shutil.rmtree(path)
        write_colour_bundle(path, model=colour_classifier_onnx(RED_AS_GREEN, sharpness=10.0))
        loaded = _load(client)
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["swapped"] is True
        replaced = _label(client)
        assert replaced != "red"  # the bundle on disk now: its "red" class is green
        with (path / "contract.json").open("ab") as file:
            file.write(b" ")  # tampered: the manifest no longer matches
        refused = _load(client)
        assert refused.status_code >= 400
        assert "contract.json" in refused.text
        assert str(path) not in refused.text  # the server's layout stays private
        assert _label(client) == replaced  # the version that was serving keeps serving
