"""``visionyard predict --engine ray`` on a local Ray (``ray.init(num_cpus=2)``, started once for
the module: Ray costs seconds to start): the same rows as the local engine, as part files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import run
from tests.fixtures.runtime import COLOURS, colour_classifier_onnx, flat_png, write_colour_bundle

ray: Any = pytest.importorskip("ray")
Capture = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_ray_engine_writes_the_rows_of_the_local_engine(
    local_ray: None, tmp_path: Path, capsys: Capture
) -> None:
    bundle = write_colour_bundle(
        tmp_path / "bundle", variants={"int8": colour_classifier_onnx(sharpness=5.0)}
    )
    images = tmp_path / "images"
    for i, (name, rgb) in enumerate(list(COLOURS.items()) * 4):
        folder = images / f"set{i % 3}" / ("deep" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:02d}-{name}.png").write_bytes(flat_png(rgb, (12 + i, 10)))
    (images / "set1" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    common = ["predict", bundle.path, images, "--variant", "int8", "--batch-size", "3"]

    code, _, err = run(capsys, *common, "-o", tmp_path / "local.jsonl")
    assert code == 0, err
    code, out, err = run(capsys, *common, "--engine", "ray", "-o", tmp_path / "ray")
    assert code == 0, err
    assert "scored 20 of 21 images (1 failed)" in out
    assert "variant int8, engine ray" in out

    parts = sorted((tmp_path / "ray").glob("part-*.jsonl"))
    assert len(parts) == 7  # one file per batch of 3
    on_ray = [json.loads(line) for part in parts for line in part.read_text().splitlines()]
    local = [json.loads(line) for line in (tmp_path / "local.jsonl").read_text().splitlines()]
    assert on_ray == local  # same rows, same order (parts are named by their first index)
    assert sum(row["error"] is not None for row in on_ray) == 1
