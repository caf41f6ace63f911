"""Bring your own model, end to end: import, serve, ``predict`` locally and on a local Ray
(started by the engine itself, once: Ray costs seconds to start), ``evaluate``."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.cli import run, store_flags
from tests.fixtures.runtime import flat_png

ray: Any = pytest.importorskip("ray")
Capture = pytest.CaptureFixture[str]


def test_an_imported_model_is_served_scored_locally_and_on_ray_and_evaluated(
    request: pytest.FixtureRequest, tmp_path: Path, capsys: Capture
) -> None:
    """The whole story through the CLI, on one version: a model made elsewhere (a torch factory
    and safetensors weights) -> `import` -> served by a real server -> `predict` locally and on
    a Ray the engine starts (the same rows, in order, as part files; a corrupt image is a row)
    -> `evaluate --log` -> `models show` lists the evaluation.

    Ray is started once, by the engine (seconds): its driver installs a SIGTERM handler
    (sys.exit) and keeps it after shutdown, so the engine must put the handlers back, or a
    process that scored on Ray no longer ends a tracked run as KILLED on SIGTERM."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from tests.fixtures.import_models import colour_weights
    from tests.fixtures.models import session_settings
    from tests.fixtures.serving import encoded
    from visionyard.serving.app import running_server
    from visionyard.serving.registry_source import RegistrySource

    torch.manual_seed(0)
    settings = session_settings(request, tmp_path / ".visionyard", "byo-story")
    flags = [*store_flags(settings)]
    weights, labels = tmp_path / "colour.safetensors", tmp_path / "labels.json"
    save_file(colour_weights(), str(weights))
    labels.write_text(json.dumps(["red", "green", "blue"]), encoding="utf-8")
    data = tmp_path / "colours"
    for name, rgb in (("red", (230, 20, 20)), ("green", (20, 230, 20)), ("blue", (20, 20, 230))):
        (data / name).mkdir(parents=True)
        for i in range(3):
            (data / name / f"{i}.png").write_bytes(flat_png(rgb, (20 + 7 * i, 16)))

    code, out, err = run(
        capsys, *flags, "import", "--torch", "tests.fixtures.import_models:colour_net",
        "--factory-arg", "num_classes=3", "--weights", weights, "--preset", "imagenet",
        "--input-size", "32", "--labels", labels, "-n", "colours", "--origin", "test factory",
    )  # fmt: skip
    assert code == 0, err
    assert "registered colours version 1" in out

    serving = {"http_port": 0, "grpc_port": 0, "poll_interval_s": 3600}
    served = settings.model_copy(update={"serving": settings.serving.model_copy(update=serving)})
    with (
        running_server(served, {"c": RegistrySource("colours/1", served)}) as srv,
        httpx.Client(base_url=srv.http_url, timeout=30) as http,
    ):
        answer = http.post("/v1/models/c:predict", content=encoded((20, 20, 230))).json()
    assert answer["model_version"] == "1"
    assert answer["predictions"][0][0]["label"] == "blue"

    extra = tmp_path / "extra"
    (extra / "deep").mkdir(parents=True)
    (extra / "deep" / "red.png").write_bytes(flat_png((230, 20, 20), (9, 9)))
    (extra / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    common = [*flags, "predict", "colours/1", data, extra, "--batch-size", "3"]
    code, out, err = run(capsys, *common, "-o", tmp_path / "local.jsonl")
    assert code == 0, err
    assert "scored 10 of 11 images (1 failed)" in out
    assert not ray.is_initialized()
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    code, out, err = run(capsys, *common, "--engine", "ray", "-o", tmp_path / "on-ray")
    assert code == 0, err
    assert "scored 10 of 11 images (1 failed)" in out
    assert "engine ray" in out
    assert not ray.is_initialized()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers

    parts = sorted((tmp_path / "on-ray").glob("part-*.jsonl"))
    assert len(parts) == 4  # one file per batch of 3
    on_ray = [json.loads(line) for part in parts for line in part.read_text().splitlines()]
    local = [json.loads(line) for line in (tmp_path / "local.jsonl").read_text().splitlines()]
    assert on_ray == local  # same rows, same order (parts are named by their first index)
    (broken,) = [row for row in on_ray if row["error"] is not None]
    assert broken["path"].endswith("corrupt.png")
    assert broken["labels"] == []
    scored = [row for row in on_ray if row["error"] is None]
    assert [row["labels"][0] for row in scored] == [
        Path(row["path"]).parent.name.replace("deep", "red") for row in scored
    ]

    code, out, err = run(capsys, *flags, "evaluate", "colours/1", "--data", data, "--log")
    assert code == 0, err
    assert "accuracy 1.0000" in out
    code, out, err = run(capsys, *flags, "models", "show", "colours/1", "--json")
    assert code == 0, err
    (record,) = json.loads(out)["evaluations"]
    assert record["metrics"]["accuracy"] == 1.0
