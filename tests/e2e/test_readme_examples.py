"""The README's serving examples (curl and httpx) work as written against a live server.

The only change made to them is the address: the server here listens on a free port.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.models import TrainedBundle
from tests.fixtures.serving import server
from visionyard.serving.sources import LocalBundleSource

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def _examples() -> list[tuple[str, str]]:
    text = README.read_text()
    start = text.index("<!-- serving-examples")
    end = text.index("<!-- /serving-examples -->")
    return BLOCK.findall(text[start:end])


@pytest.fixture(scope="module")
def live(trained_bundle: TrainedBundle) -> Iterator[str]:
    sources = {"shapes": LocalBundleSource(trained_bundle.bundle_path)}
    with server(sources) as running:
        yield running.http_url.removeprefix("http://")


@pytest.fixture
def workdir(tmp_path: Path, synth_classification: Path) -> Path:
    star = sorted((synth_classification / "val" / "star").glob("*.png"))[0]
    shutil.copyfile(star, tmp_path / "star.png")
    return tmp_path


def _run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_examples_are_present() -> None:
    kinds = [kind for kind, _ in _examples()]
    assert kinds == ["bash", "python"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples(live: str, workdir: Path) -> None:
    commands = [c for c in _examples()[0][1].splitlines() if c.strip()]
    outputs = [_run(["bash", "-c", c.replace("localhost:8000", live)], workdir) for c in commands]
    assert outputs[0].strip() == "200"
    predicted = json.loads(outputs[1])
    assert predicted["model_name"] == "shapes"
    labels = {p["label"] for p in predicted["predictions"][0]}
    assert labels == {"circle", "square", "star", "triangle"}
    metadata = json.loads(outputs[2])
    assert metadata["parameters"]["contract"]["labels"] == ["circle", "square", "star", "triangle"]


def test_httpx_example(live: str, workdir: Path) -> None:
    code = _examples()[1][1].replace("localhost:8000", live)
    printed = _run([sys.executable, "-c", code], workdir)
    assert "'name': 'top_labels'" in printed
    assert re.search(r"'\d\.\d{6}:\d:(circle|square|star|triangle)'", printed), printed
