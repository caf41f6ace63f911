"""``visionyard predict`` through the CLI: a registered version and a bundle folder, a nested
folder with a corrupt image, JSONL and CSV checked line by line against the runtime, a pinned
variant that is absent, ``--strict``, and a Ray address that does not answer."""

from __future__ import annotations

import csv
import json
import socket
import time
from pathlib import Path

import pytest

from tests.fixtures.cli import run, store_flags
from tests.fixtures.models import session_settings
from tests.fixtures.runtime import COLOURS, flat_png
from tests.registry_support import log_colour_run
from visionyard.bundle.store import Bundle
from visionyard.registry import Registry
from visionyard.runtime.session import InferenceSession
from visionyard.settings import Settings

Capture = pytest.CaptureFixture[str]
NAME = "predict-colours"
#: Relative to the image folder: nested subfolders, one corrupt file, one non-image skipped.
GOOD = ("red.png", "sub/green.jpg", "sub/deeper/blue.png", "sub/deeper/white.png")
CORRUPT = "sub/broken.jpg"


@pytest.fixture(scope="module")
def settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A store holding ``predict-colours`` version 1 (the colour classifier, fp32 only)."""
    tmp = tmp_path_factory.mktemp("predict")
    found = session_settings(request, tmp / ".visionyard", f"predict-{tmp.name}")
    Registry(found).register(log_colour_run(found, tmp), NAME)
    return found


@pytest.fixture(scope="module")
def bundle(settings: Settings) -> Path:
    """Version 1's verified copy in the serving cache, as ``predict NAME/1`` leaves it (so that
    each test that takes the folder runs on its own too)."""
    _, path = Registry(settings).fetch_bundle(f"{NAME}/1", Path(settings.home) / "serving-cache")
    return Path(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for rel in GOOD:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        colour = COLOURS[Path(rel).stem]
        (root / rel).write_bytes(flat_png(colour, (20, 14)))
    (root / CORRUPT).write_bytes(flat_png((1, 2, 3))[:40])  # truncated
    (root / "sub" / "readme.txt").write_text("skipped: not an image")
    return root


def expected(session: InferenceSession, root: Path, top_k: int) -> dict[str, list[str]]:
    """What the runtime itself answers for each good image (labels, best first)."""
    paths = [root / rel for rel in GOOD]
    found = session.classify(paths)
    return {str(p): [x.label for x in preds[:top_k]] for p, preds in zip(paths, found, strict=True)}


def test_jsonl_of_a_registered_version(
    settings: Settings, images: Path, tmp_path: Path, capsys: Capture
) -> None:
    target = tmp_path / "out.jsonl"
    code, out, err = run(capsys, *store_flags(settings), "predict", f"{NAME}/1", images,
                         "--output", target, "--top-k", "2", "--batch-size", "2")  # fmt: skip
    assert code == 0, err
    assert "scored 4 of 5 images (1 failed)" in out
    assert f"model {NAME}/1, variant fp32, engine local" in out
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 5
    cached = Path(settings.home) / "serving-cache" / NAME / "1"
    want = expected(InferenceSession.open(cached), images, 2)
    by_path = {row["path"]: row for row in rows}
    for path, labels in want.items():
        assert by_path[path]["labels"] == labels
        assert by_path[path]["error"] is None
        assert len(by_path[path]["scores"]) == 2
    broken = by_path[str(images / CORRUPT)]
    assert broken["labels"] == []
    assert "truncated" in broken["error"] or "readable" in broken["error"]


def test_csv_of_a_bundle_folder_to_stdout(bundle: Path, images: Path, capsys: Capture) -> None:
    code, out, err = run(capsys, "predict", bundle, images, "--format", "csv", "--top-k", "1")
    assert code == 0, err
    table = list(csv.reader(out.splitlines()))
    assert table[0] == ["path", "label_1", "score_1", "error"]
    want = expected(InferenceSession.open(bundle), images, 1)
    paths = [row[0] for row in table[1:]]
    assert sorted(paths) == sorted([*want, str(images / CORRUPT)])
    for path, label, score, error in table[1:]:
        if path in want:
            assert ([label], error) == (want[path], "")
            assert 0.5 < float(score) <= 1.0
        else:
            assert (label, score) == ("", "")
            assert error
    assert "scored 4 of 5 images (1 failed)" in err  # the summary leaves stdout to the rows


def test_a_missing_variant_is_one_line(settings: Settings, images: Path, capsys: Capture) -> None:
    code, out, err = run(capsys, *store_flags(settings), "predict", f"{NAME}/1", images,
                         "--variant", "int8")  # fmt: skip
    assert code == 6
    assert "has no variant 'int8' (it has: fp32)" in err
    assert "Traceback" not in err
    assert out == ""


def test_strict_fails_when_an_image_failed(
    bundle: Path, images: Path, tmp_path: Path, capsys: Capture
) -> None:
    code, _, err = run(capsys, "predict", bundle, images, "-o", tmp_path / "o.csv", "--strict")
    assert code == 5, err
    assert (tmp_path / "o.csv").read_text().count("\n") == 6  # every row still written


def test_an_unreachable_ray_cluster_is_one_line_and_quick(
    bundle: Path, images: Path, tmp_path: Path, capsys: Capture
) -> None:
    pytest.importorskip("ray")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    began = time.monotonic()
    code, _, err = run(capsys, "predict", bundle, images, "--engine", "ray",
                       "--ray-address", f"127.0.0.1:{port}", "-o", tmp_path / "out")  # fmt: skip
    assert code == 3
    assert time.monotonic() - began < 20
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: the Ray cluster at 127.0.0.1:{port} does not answer ([Errno 111] Connection "
        "refused within 10 s); check --ray-address or RAY_ADDRESS"
    ]
    assert "Traceback" not in err


def test_a_detector_writes_boxes(detector_bundle: Bundle, tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "a.png").write_bytes(flat_png((9, 9, 9), (128, 128)))
    code, out, err = run(capsys, "predict", detector_bundle.path, tmp_path / "a.png")
    assert code == 0, err
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["labels"] == ["cat", "dog"]
    assert row["boxes"] == [[16.0, 16.0, 48.0, 48.0], [64.0, 64.0, 112.0, 120.0]]  # 2x the input
    assert row["error"] is None
