"""The read-only web page ``/ui`` of a real server on loopback: behind the inference token
(a query parameter once, then a cookie), the models with their references, request figures,
the drift verdict, the gallery of captured hard images (served only from the capture folder),
the live report; and in a real headless chromium: no console errors, the gallery's images
load, and the screenshot is not blank."""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.fixtures.runtime import (
    COLOURS,
    colour_classifier_onnx,
    colour_contract,
    flat_png,
    write_colour_bundle,
)
from tests.fixtures.serving import encoded, serving_settings
from visionyard.bundle.store import write_bundle
from visionyard.monitor import build_profile, image_files, save_profile
from visionyard.runtime.session import InferenceSession
from visionyard.serving.app import RunningServer, running_server
from visionyard.serving.reference import BUNDLE_PROFILE
from visionyard.serving.rest.ui import COOKIE
from visionyard.serving.sources import LocalBundleSource

TOKEN = "ui-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DARK = 30


def profiled_bundle(root: Path) -> Path:
    """The colour classifier with a reference profile of 60 flat colour images inside."""
    first = write_colour_bundle(root / "first").path
    for name in ("red", "green", "blue"):
        (root / "val" / name).mkdir(parents=True)
        for i in range(20):
            data = flat_png(COLOURS[name], (16 + i % 7, 12 + i % 5))
            (root / "val" / name / f"{i}.png").write_bytes(data)
    profile = build_profile(
        InferenceSession.open(first), image_files(root / "val"), root=root / "val"
    )
    save_profile(profile, root / "profile")
    carried = {f"{BUNDLE_PROFILE.as_posix()}/{p.name}": p for p in (root / "profile").iterdir()}
    return write_bundle(
        root / "bundle", model=colour_classifier_onnx(), contract=colour_contract(),
        extra_files=carried,
    ).path  # fmt: skip


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui") / "captures"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, captures: Path) -> Iterator[RunningServer]:
    bundle = profiled_bundle(tmp_path_factory.mktemp("ui-model"))
    settings = serving_settings(inference_token=TOKEN)
    monitor = {
        "min_samples": 20, "compare_every_images": 10, "ui": True,
        "capture": {"dir": captures, "min_confidence": 0.6, "max_margin": 0.05},
    }  # fmt: skip
    settings = settings.model_validate({**settings.model_dump(), "monitor": monitor})
    with running_server(settings, {"m": LocalBundleSource(bundle)}) as srv:
        with httpx.Client(base_url=srv.http_url, timeout=30, headers=AUTH) as http:
            for i in range(DARK):
                image = encoded((90 + 2 * i, 25, 25), (64 + i % 9, 48))
                answer = http.post("/v1/models/m:predict", content=image,
                                   headers={"X-Request-ID": f"dark-{i}"})  # fmt: skip
                assert answer.status_code == 200
        wait_for_captures(captures)
        yield srv


def wait_for_captures(folder: Path) -> int:
    """The writer runs on its own thread: wait until the count of sidecars stops growing."""
    seen = -1
    for _ in range(100):
        count = len(list(folder.rglob("*.json")))
        if count and count == seen:
            return count
        seen = count
        time.sleep(0.2)
    return seen


@contextmanager
def ui_client(running: RunningServer) -> Iterator[httpx.Client]:
    """A client that gave the token once as ``?token=`` and carries the cookie since."""
    with httpx.Client(base_url=running.http_url, timeout=30) as client:
        answer = client.get("/ui", params={"token": TOKEN})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui"  # the token leaves the address bar
        assert "httponly" in answer.headers["set-cookie"].lower()
        assert client.cookies.get(COOKIE) == TOKEN
        yield client


def test_ui_needs_the_token(running: RunningServer) -> None:
    for path in ("/ui", "/ui/captures/m/1/x.jpg", "/ui/models/m/report"):
        answer = httpx.get(running.http_url + path, timeout=30)
        assert answer.status_code == 401
        assert "needs the inference token" in answer.text
    wrong = httpx.get(f"{running.http_url}/ui", params={"token": "nope"}, timeout=30)
    assert wrong.status_code == 401
    assert httpx.get(f"{running.http_url}/ui", headers=AUTH, timeout=30).status_code == 200


def test_ui_shows_models_figures_drift_and_gallery(running: RunningServer, captures: Path) -> None:
    with ui_client(running) as client:
        answer = client.get("/ui")
    assert answer.status_code == 200
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    page = answer.text
    assert "<tr data-model='m'>" in page
    assert f"<td class='num'>{DARK}</td>" in page  # requests ok
    assert ">drift</span>" in page
    assert "brightness_r" in page
    sidecars = [json.loads(p.read_text()) for p in captures.rglob("*.json")]
    assert sidecars, "no hard image was captured"
    newest = max(sidecars, key=lambda s: s["time"])
    first = page.index("<figure>", page.index("id='gallery'"))
    assert newest["file"] in page[first : page.index("</figure>", first)]  # newest first
    assert page.count("src='/ui/captures/m/1/") == len(sidecars)
    assert "http://" not in page.replace(running.http_url, "")


def test_capture_route_serves_only_images_in_the_folder(
    running: RunningServer, captures: Path
) -> None:
    image = next(captures.rglob("*.jpg")).relative_to(captures).as_posix()
    (captures.parent / "secret.png").write_bytes(flat_png((1, 2, 3)))
    with ui_client(running) as client:
        served = client.get(f"/ui/captures/{image}")
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert served.content[:2] == b"\xff\xd8"
        for bad in ("..%2Fsecret.png", "m/..%2F..%2Fsecret.png", "%2E%2E/secret.png",
                    image.replace(".jpg", ".json"), "m/1", "nope.png", "m/%00.png"):  # fmt: skip
            assert client.get(f"/ui/captures/{bad}").status_code == 404, bad


def test_live_report_page_has_the_plots(running: RunningServer) -> None:
    with ui_client(running) as client:
        page = client.get("/ui/models/m/report").text
        missing = client.get("/ui/models/nope/report")
    assert ">drift</span>" in page
    assert page.count("<img") >= 10
    assert "the model has no embedding output" in page
    assert missing.status_code == 200
    assert "nope" in missing.text


@pytest.fixture
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")  # fmt: skip
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1400"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def test_ui_in_headless_chromium(running: RunningServer, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(browser, WebDriver)
    browser.get(f"{running.http_url}/ui?token={TOKEN}")
    assert browser.current_url == f"{running.http_url}/ui"
    assert "visionyard" in browser.title
    images = browser.find_elements("css selector", "#gallery img")
    assert images, "the gallery shows no image"
    for image in images:
        browser.execute_script("arguments[0].scrollIntoView()", image)
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"
    for _ in range(50):
        widths = [browser.execute_script(loaded, image) for image in images]
        if all(widths):
            break
        time.sleep(0.1)
    assert all(w and w > 0 for w in widths), widths
    browser.execute_script("window.scrollTo(0, 0)")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    png = browser.get_screenshot_as_png()
    (tmp_path / "ui.png").write_bytes(png)
    colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 1  # None: more colours than counted


def test_ui_is_off_unless_enabled() -> None:
    with running_server(serving_settings(), {}) as srv:
        assert httpx.get(f"{srv.http_url}/ui", timeout=30).status_code == 404
        assert httpx.get(f"{srv.http_url}/ui/captures/x.png", timeout=30).status_code == 404
