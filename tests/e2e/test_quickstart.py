"""``visionyard quickstart`` end to end, exactly as the README runs it (in a fresh folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from mlflow import MlflowClient

EXE = Path(sys.executable).parent / "visionyard"


@pytest.mark.slow
def test_quickstart_tells_the_whole_story(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONYARD_")}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [str(EXE), "quickstart"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for expected in (
        "240 added, 0 removed, 0 relabelled",
        "registered shapes version 1 (semver 1.0.0",
        "promoted shapes: production (unset) -> 1",
        "registered shapes version 2 (semver 1.1.0",
        "gate PASSED",
        "promoted shapes: production 1 -> 2",
        "rolled back shapes: production 2 -> 1",
        "server now answers with version 2",
        "server now answers with version 1",
        "REST  POST /v1/models/shapes:predict │ version 1: star",
        "gRPC  ModelInfer (BYTES image)       │ version 2: star",
        "stored beside shapes/1: sha256:",
        "sending 120 validation images darkened by 50%",
        "drift verdict: drift",
        "registered shapes version 3",
        "rollout of version 3 ended after",
        "rollout of version 2 ended after",
        "server now answers with version 2 (",
    ):
        assert expected in out, expected
    captures = tmp_path / ".visionyard" / "quickstart" / "captures"
    captured = re.search(r"captured images: (\d+) in (\S+)", out)
    assert captured is not None
    assert Path(captured[2]) == captures
    sidecars = list(captures.glob("shapes/1/*/*.json"))
    assert int(captured[1]) > 0  # half-dark shapes: some are hard
    assert int(captured[1]) <= len(sidecars)  # the rollouts after it send v1 more images
    assert "Traceback" not in proc.stderr
    bad = re.search(r"rollout of version 3 ended after \d+ requests: (\w+) \((\w+):", out)
    good = re.search(r"rollout of version 2 ended after \d+ requests: (\w+) \((\w+):", out)
    assert bad is not None
    assert good is not None
    assert bad[1] == "rolled_back"  # the server judged the shadowed v3 and rolled it back
    assert bad[2] == "min_agreement"  # it disagrees with production (the gate would stop it too)
    assert (good[1], good[2]) == ("promoted", "steps_passed")

    # The story left a real MLflow store behind: read it with a plain client.
    db = tmp_path / ".visionyard" / "mlflow.db"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The ``noload`` loader", category=Warning)
        client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
        model = client.get_registered_model("shapes")
    assert {k: str(v) for k, v in model.aliases.items()} == {"production": "2"}
    versions = client.search_model_versions("name='shapes'")
    assert sorted(str(v.version) for v in versions) == ["1", "2", "3"]
    v2 = client.get_model_version("shapes", "2")
    assert "int8" in v2.tags.get("vy.variants", "")
    run = client.get_run(v2.run_id)
    assert run.data.metrics["val_accuracy"] >= 0.95
    assert not (tmp_path / "mlruns").exists()
