"""``visionyard monitor report`` on a real tracking store: the HTML file, ``--json``, captures as
the live side, and the clear refusals (no profile, no live side, no output)."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

from tests.fixtures.cli import Capture, run, store_flags
from tests.integration.test_monitor_cli import darkened
from tests.registry_support import colour_dataset, log_colour_run
from visionyard.settings import Settings


def test_report_html_json_and_refusals(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    flags = store_flags(tracking_settings)
    name = f"report-{uuid.uuid4().hex[:8]}"
    for number in range(2):
        run_id = log_colour_run(tracking_settings, tmp_path, sharpness=10.0 + number)
        assert run(capsys, *flags, "register", run_id, "--name", name)[0] == 0
    assert run(capsys, *flags, "promote", name, "1", "--to", "production")[0] == 0
    data = colour_dataset(tmp_path / "colours", per_class=20)
    assert run(capsys, *flags, "monitor", "profile", f"{name}/1", "--data", data)[0] == 0
    dark = darkened(data, tmp_path / "dark")

    page = tmp_path / "report.html"
    code, out, err = run(capsys, *flags, "monitor", "report", f"{name}@production",
                         "--data", dark, "--out", page, "--json")  # fmt: skip
    assert code == 0, err
    body = json.loads(out)
    assert body["verdict"] == "drift"
    assert "brightness_r" in body["drifting"]
    assert body["live_images"] == 100
    assert body["embeddings"]["projection"] is None  # the colour model has no embedding
    assert f"report written: {page} (verdict: drift)" in " ".join(err.split())
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert html.rstrip().endswith("</html>")
    assert ">drift</span>" in html
    assert html.count("<img") == len(body["plots"]) >= 10
    assert not re.search(r"https?://", html)
    assert "the model has no embedding output" in html


def test_report_on_captured_images(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    flags = store_flags(tracking_settings)
    name = f"report-{uuid.uuid4().hex[:8]}"
    run_id = log_colour_run(tracking_settings, tmp_path)
    assert run(capsys, *flags, "register", run_id, "--name", name)[0] == 0
    data = colour_dataset(tmp_path / "colours", per_class=20)
    assert run(capsys, *flags, "monitor", "profile", f"{name}/1", "--data", data)[0] == 0
    day = tmp_path / "captures" / name / "1" / "20260101"
    day.mkdir(parents=True)
    for i, image in enumerate(sorted(darkened(data, tmp_path / "dark").rglob("*.png"))[:40]):
        shutil.copy(image, day / f"req-{i}-0.png")
        (day / f"req-{i}-0.json").write_text(
            json.dumps({"model": name, "version": "1", "file": f"req-{i}-0.png"})
        )
    code, out, err = run(capsys, *flags, "monitor", "report", f"{name}/1",
                         "--captures", tmp_path / "captures", "--json")  # fmt: skip
    assert code == 0, err
    body = json.loads(out)
    assert body["live_images"] == 40
    assert body["live"] == f"captures {tmp_path / 'captures'}/{name}"


def test_report_refuses_without_profile_live_side_or_output(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    flags = store_flags(tracking_settings)
    name = f"report-{uuid.uuid4().hex[:8]}"
    run_id = log_colour_run(tracking_settings, tmp_path)
    assert run(capsys, *flags, "register", run_id, "--name", name)[0] == 0
    data = colour_dataset(tmp_path / "colours", per_class=5)
    page = tmp_path / "r.html"

    code, _, err = run(capsys, *flags, "monitor", "report", f"{name}/1", "--data", data,
                       "--out", page)  # fmt: skip
    assert code == 4
    assert f"visionyard monitor profile {name}/1 --data DIR" in err
    assert err.count("\n") == 1
    assert not page.exists()
    code, _, err = run(capsys, *flags, "monitor", "report", f"{name}/1", "--out", page)
    assert code == 3
    assert "exactly one of --data, --captures or --window" in err
    code, _, err = run(capsys, *flags, "monitor", "report", f"{name}/1", "--data", data)
    assert code == 3
    assert "--out report.html, --json or both" in err
    assert "Traceback" not in err


def test_report_on_a_saved_window(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    """A window saved from a server (the same file ``GET .../monitor/window`` returns) is
    compared with the version's profile; one of another model, or a file that is not a
    window, is refused with one line."""
    from visionyard.monitor import collect_sample, image_files
    from visionyard.monitor.saved_window import window_bytes
    from visionyard.registry.service import Registry

    flags = store_flags(tracking_settings)
    name = f"report-{uuid.uuid4().hex[:8]}"
    run_id = log_colour_run(tracking_settings, tmp_path)
    assert run(capsys, *flags, "register", run_id, "--name", name)[0] == 0
    data = colour_dataset(tmp_path / "colours", per_class=20)
    assert run(capsys, *flags, "monitor", "profile", f"{name}/1", "--data", data)[0] == 0
    dark = darkened(data, tmp_path / "dark")
    session = Registry(tracking_settings).open_session(f"{name}/1", tmp_path / "bundles")
    sample = collect_sample(session, image_files(dark), root=dark).sample
    saved = tmp_path / "window.npz"
    saved.write_bytes(window_bytes(sample, {"model": name, "version": "1"}))

    code, out, err = run(capsys, *flags, "monitor", "report", f"{name}/1",
                         "--window", saved, "--json")  # fmt: skip
    assert code == 0, err
    body = json.loads(out)
    assert body["verdict"] == "drift"
    assert "brightness_r" in body["drifting"]
    assert body["live_images"] == sample.images == 100
    assert body["live"].startswith("window window.npz (version 1, saved ")

    other = tmp_path / "other.npz"
    other.write_bytes(window_bytes(sample, {"model": "someone-else", "version": "3"}))
    code, _, err = run(capsys, *flags, "monitor", "report", f"{name}/1",
                       "--window", other, "--json")  # fmt: skip
    assert code == 3
    assert f"a window of model someone-else, not {name}" in err
    assert err.count("\n") == 1
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run(capsys, *flags, "monitor", "report", f"{name}/1",
                       "--window", junk, "--json")  # fmt: skip
    assert code != 0
    assert "is not a saved window" in err
    assert "Traceback" not in err
