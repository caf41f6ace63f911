"""``visionyard monitor profile | show | compare`` on a real tracking store, through the CLI.

A tiny colour classifier is registered; its profile is built on a colour dataset and stored
beside the version; the same images compare "ok", a darkened copy drifts on brightness; a
version without a profile and a tampered profile are refused with one clear line.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.cli import run, store_flags
from tests.registry_support import colour_dataset, log_colour_run
from visionyard.monitor.store import TAG_DIGEST, profile_folder
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient

Capture = pytest.CaptureFixture[str]


def darkened(source: Path, target: Path, factor: float = 0.6) -> Path:
    for path in sorted(source.rglob("*.png")):
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.eval(Image.open(path).convert("RGB"), lambda v: int(v * factor)).save(out)
    return target


def test_profile_show_and_compare_through_the_cli(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = f"monitor-{uuid.uuid4().hex[:8]}"
    for number in range(2):
        run_id = log_colour_run(s, tmp_path, sharpness=10.0 + number)
        code, _, err = run(capsys, *flags, "register", run_id, "--name", name)
        assert code == 0, err
    assert run(capsys, *flags, "promote", name, "1", "--to", "production")[0] == 0
    data = colour_dataset(tmp_path / "colours", per_class=20)

    code, out, err = run(capsys, *flags, "monitor", "profile", f"{name}/1", "--data", data)
    assert code == 0, err
    assert "brightness_r" in out
    assert "100 images" in out
    assert "stored beside" in out
    assert "note: the profile holds 100 images, fewer than a server window" in " ".join(err.split())
    tags = RegistryClient.from_settings(s).get_version(name, "1").tags
    assert tags[TAG_DIGEST].startswith("sha256:")

    code, out, _ = run(capsys, *flags, "models", "show", f"{name}/1")
    assert code == 0
    assert "100 images" in out
    assert tags[TAG_DIGEST][:19] in out
    code, out, _ = run(capsys, *flags, "monitor", "show", f"{name}@production", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["images"] == 100
    assert shown["version"] == "1"
    assert shown["shares"]["class"]["red"] == pytest.approx(0.2)

    code, out, err = run(capsys, *flags, "monitor", "compare", f"{name}@production",
                         "--data", data / "val", "--json")  # fmt: skip
    assert code == 0, err
    same = json.loads(out)
    assert same["verdict"] == "ok"
    assert same["window_images"] == 100
    embedding = next(f for f in same["features"] if f["feature"] == "embedding")
    assert embedding["verdict"] == "skipped"
    assert "no embedding output" in embedding["note"]

    dark = darkened(data, tmp_path / "dark")
    code, out, err = run(capsys, *flags, "monitor", "compare", f"{name}@production",
                         "--data", dark)  # fmt: skip
    assert code == 0, err
    assert "verdict: drift" in out
    code, out, _ = run(capsys, *flags, "monitor", "compare", f"{name}/1", "--data", dark, "--json")
    assert {"brightness_r", "brightness_g", "brightness_b"} <= set(json.loads(out)["drifting"])

    code, out, err = run(capsys, *flags, "monitor", "compare", f"{name}/2", "--data", data)
    assert code == 4
    assert f"visionyard monitor profile {name}/2 --data DIR" in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    code, out, _ = run(capsys, *flags, "models", "show", f"{name}/2")
    assert "none (visionyard monitor profile" in out


def test_a_tampered_stored_profile_is_refused(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = f"monitor-{uuid.uuid4().hex[:8]}"
    assert run(capsys, *flags, "register", log_colour_run(s, tmp_path), "--name", name)[0] == 0
    data = colour_dataset(tmp_path / "colours", per_class=8)
    assert run(capsys, *flags, "monitor", "profile", f"{name}/1", "--data", data)[0] == 0
    client = RegistryClient.from_settings(s)
    info = client.get_version(name, "1")
    piece = profile_folder(info.tags[TAG_DIGEST])
    folder = client.download_version_artifacts(info, piece, tmp_path / "evil")
    body = json.loads((folder / "profile.json").read_text())
    body["images"] = 1
    (folder / "profile.json").write_text(json.dumps(body))
    client.upload_version_artifact(info, folder / "profile.json", piece)

    code, _, err = run(capsys, *flags, "monitor", "show", f"{name}/1")
    assert code == 6
    assert "changed or truncated" in err
    assert "Traceback" not in err
    code, _, err = run(capsys, *flags, "monitor", "compare", f"{name}/1", "--data", data)
    assert code == 6


def test_compare_refuses_a_folder_without_images(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    flags = store_flags(tracking_settings)
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, *flags, "monitor", "compare", "m/1", "--data", tmp_path / "empty")
    assert code == 5
    assert "no images" in err
