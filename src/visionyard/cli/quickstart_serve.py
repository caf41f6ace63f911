"""The quickstart's serving chapter: serve ``shapes@production`` in this process, send real
images over REST (plain urllib) and gRPC (the OIP v2 stubs), then move the alias with the CLI
and watch the server follow it without a restart. Last, monitoring: version 1 gets a reference
profile of its validation images, the server receives a batch of those images darkened by half,
and the quickstart prints the drift verdict of ``GET /v2/models/shapes/monitor`` and where the
hard images the server captured went. Then rollouts, decided by the server from its live
figures: a barely trained version 3 in shadow (the server copies each request to it after
answering from production) disagrees with production and is rolled back on its own; version 2
then goes through canary steps (50 %, 100 %) and is promoted through the gate.
"""

from __future__ import annotations

import json
import secrets
import struct
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionyard.monitor.rollout.state import read_rollout
from visionyard.registry import Registry

if TYPE_CHECKING:
    from visionyard.cli.quickstart import Story

SWAP_TIMEOUT_S = 60.0
SHIFTED_IMAGES = 120
DARKEN = 0.5
ROLLOUT_IMAGES = 60
#: A demo policy: few requests and no minimum step time, so that the story ends in seconds.
ROLLOUT_POLICY = """\
min_requests: 30
min_step_seconds: 0
max_error_rate: 0.02
max_p99_latency_ratio: 4
min_agreement: 0.8
gate: gate.yaml
"""


def serve_story(story: Story) -> None:
    from visionyard.serving.app import running_server

    token = secrets.token_hex(16)
    captures = story.workdir / "captures"
    monitor = story.settings.monitor
    settings = story.settings.model_copy(
        update={
            "serving": story.settings.serving.model_copy(
                update={
                    "models": {"shapes": "shapes@production"},
                    "http_port": 0,
                    "grpc_port": 0,
                    "admin_token": token,
                    "poll_interval_s": 1.0,
                }
            ),
            "monitor": monitor.model_copy(
                update={"capture": monitor.capture.model_copy(update={"dir": captures})}
            ),
        }
    )
    val = Path(story.facts["data_v1"]) / "val"
    story.cli("monitor", "profile", "shapes/1", "--data", str(val))
    image = _sample_image(story)
    with running_server(settings) as server:
        story.console.print(f"serving http={server.http_url} grpc={server.grpc_target}")
        _show_requests(story, server.http_url, server.grpc_target, image)
        story.cli("promote", "shapes", "2", "--to", "production", "--reason", "hot swap demo")
        wait_for_version(story, server.http_url, "2")
        _show_requests(story, server.http_url, server.grpc_target, image)
        story.cli("rollback", "shapes", "--reason", "quickstart: roll back while serving")
        wait_for_version(story, server.http_url, "1")
        _show_drift(story, server.http_url, token, val, captures)
        _show_rollouts(story, server.http_url, val)


def _sample_image(story: Story) -> Path:
    val = Path(story.facts["data_v1"]) / "val"
    return sorted(val.glob("star/*.png"))[0]


def _show_requests(story: Story, http_url: str, grpc_target: str, image: Path) -> None:
    data = image.read_bytes()
    rest = rest_predict(http_url, data)
    top = rest["predictions"][0][0]
    story.table(
        f"requests with {image.name} (a star)",
        {
            "REST  POST /v1/models/shapes:predict": (
                f"version {rest['model_version']}: {top['label']} ({top['score']:.3f})"
            ),
            "gRPC  ModelInfer (BYTES image)": _grpc_top_label(grpc_target, data),
        },
    )


def rest_predict(http_url: str, data: bytes, model: str = "shapes") -> dict[str, Any]:
    request = urllib.request.Request(
        f"{http_url}/v1/models/{model}:predict",
        data=data,
        headers={"Content-Type": "image/png"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        body: dict[str, Any] = json.loads(response.read())
    return body


def _grpc_top_label(target: str, data: bytes) -> str:
    import grpc

    from visionyard.serving.proto import grpc_service_pb2 as pb
    from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc

    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
    wanted = [
        pb.ModelInferRequest.InferRequestedOutputTensor(name=n)
        for n in ("top_labels", "top_scores")
    ]
    request = pb.ModelInferRequest(
        model_name="shapes",
        inputs=[tensor],
        outputs=wanted,
        raw_input_contents=[struct.pack("<I", len(data)) + data],
    )
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.ModelInfer(request, timeout=30)
    labels = reply.raw_output_contents[0]
    label = labels[4 : 4 + struct.unpack("<I", labels[:4])[0]].decode()
    score = struct.unpack("<f", reply.raw_output_contents[1][:4])[0]
    return f"version {reply.model_version}: {label} ({score:.3f})"


def wait_for_version(story: Story, http_url: str, version: str, model: str = "shapes") -> None:
    """Until ``model``'s metadata names ``version`` (the server followed the alias)."""
    started = time.perf_counter()
    while time.perf_counter() - started < SWAP_TIMEOUT_S:
        served = _metadata(http_url, model).get("versions", [None])[0]
        if served == version:
            story.console.print(
                f"server now answers with version {version} "
                f"({time.perf_counter() - started:.1f} s after the alias moved, no restart)"
            )
            return
        time.sleep(0.2)
    raise TimeoutError(f"the server did not switch to version {version} in {SWAP_TIMEOUT_S} s")


def _show_drift(story: Story, http_url: str, token: str, val: Path, captures: Path) -> None:
    """Send darkened validation images, then show the monitor's verdict and the captures."""
    from visionyard.monitor import image_files

    paths = image_files(val)[:SHIFTED_IMAGES]
    story.console.print(
        f"sending {len(paths)} validation images darkened by {DARKEN:.0%} (a camera gone dark)"
    )
    for path in paths:
        rest_predict(http_url, _darkened(path))
    body = _monitor(http_url, token)
    drifting = ", ".join(body.get("drifting", [])[:6]) or "none"
    saved = _captured(captures)
    story.table(
        "monitoring: GET /v2/models/shapes/monitor",
        {
            "verdict": str(body.get("verdict")),
            "window": f"{body['window']['images']} images vs a reference of "
            f"{body['reference']['images']} (visionyard monitor profile shapes/1)",
            "drifting features": drifting,
            "captured hard images": f"{saved} in {captures}",
            "list or export them": f"visionyard data capture list {captures}",
            "a report with plots": f"visionyard monitor report shapes@production "
            f"--captures {captures} --out report.html",
        },
    )
    story.console.print(f"drift verdict: {body.get('verdict')}", highlight=False)
    story.console.print(f"captured images: {saved} in {captures}", highlight=False)


def _show_rollouts(story: Story, http_url: str, val: Path) -> None:
    """A barely trained v3 in shadow is rolled back on its own; v2 then goes through canary
    steps to production. The server decides both from its live figures; the CLI only starts."""
    from visionyard.cli.quickstart import MODEL, QUICKSTART_MODEL
    from visionyard.monitor import image_files
    from visionyard.train import make_config, train

    policy = story.workdir / "rollout.yaml"  # beside gate.yaml, written by the gate step
    policy.write_text(ROLLOUT_POLICY)
    paths = image_files(val)  # sorted by class folder: take every k-th to mix the classes
    images = [p.read_bytes() for p in paths[:: max(1, len(paths) // ROLLOUT_IMAGES)]]
    story.console.print("training v3 for one epoch at lr 1e-7: a deliberately bad version")
    config = make_config(
        data=story.facts["data_v1"], epochs=1, lr=1e-7, seed=story.seed, **QUICKSTART_MODEL
    )
    bad = train(config, story.settings, progress=False, console=story.console)
    story.cli("register", bad.run_id, "--name", MODEL, "--parent", "2")
    story.cli("rollout", "start", MODEL, "3", "--shadow", "100", "--policy", str(policy))
    _drive_rollout(story, http_url, images, "version 1 answers, version 3 is shadowed")
    story.cli("rollout", "status", MODEL)
    story.cli(
        "rollout", "start", MODEL, "2", "--canary", "50", "--steps", "50,100",
        "--policy", str(policy),
    )  # fmt: skip
    _drive_rollout(story, http_url, images, "canary: version 2 gets 50 %, then 100 %")
    story.cli("rollout", "status", MODEL)
    wait_for_version(story, http_url, "2")


def _drive_rollout(story: Story, http_url: str, images: list[bytes], what: str) -> None:
    """Wait for the server to pick the rollout up, send images until it has ended (bounded)."""
    started = time.perf_counter()
    while _metadata(http_url)["parameters"].get("rollout") is None:
        if time.perf_counter() - started > SWAP_TIMEOUT_S:
            raise TimeoutError(f"the server did not pick up the rollout in {SWAP_TIMEOUT_S} s")
        time.sleep(0.2)
    story.console.print(f"sending validation images ({what})")
    sent = 0
    while _metadata(http_url)["parameters"].get("rollout") is not None:
        if time.perf_counter() - started > SWAP_TIMEOUT_S:
            raise TimeoutError(f"the rollout did not end in {SWAP_TIMEOUT_S} s")
        for data in images[:10]:
            rest_predict(http_url, data)
        images = images[10:] + images[:10]
        sent += 10
    registry = Registry(story.settings)
    ended = read_rollout(registry, "shapes")
    while ended is not None and ended.running and time.perf_counter() - started < SWAP_TIMEOUT_S:
        time.sleep(0.2)  # the server takes traffic off a breaching candidate before it writes
        ended = read_rollout(registry, "shapes")
    outcome = f"{ended.status} ({ended.rule}: {ended.reason})" if ended else "unknown"
    story.console.print(
        f"rollout of version {ended.candidate if ended else '?'} ended after {sent} requests: "
        f"{outcome}",
        highlight=False,
        soft_wrap=True,
    )


def _metadata(http_url: str, model: str = "shapes") -> dict[str, Any]:
    with urllib.request.urlopen(f"{http_url}/v2/models/{model}", timeout=10) as response:  # noqa: S310
        body: dict[str, Any] = json.loads(response.read())
    return body


def _darkened(path: Path) -> bytes:
    import io

    from PIL import Image

    with Image.open(path) as image:
        dark = Image.eval(image.convert("RGB"), lambda v: int(v * DARKEN))
    buffer = io.BytesIO()
    dark.save(buffer, "PNG")
    return buffer.getvalue()


def _monitor(http_url: str, token: str) -> dict[str, Any]:
    """The monitor endpoint's answer once the reference profile has loaded (bounded wait)."""
    request = urllib.request.Request(
        f"{http_url}/v2/models/shapes/monitor", headers={"Authorization": f"Bearer {token}"}
    )
    body: dict[str, Any] = {}
    for _ in range(100):
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (loopback)
            body = json.loads(response.read())
        if body.get("reference", {}).get("state") != "loading":
            break
        time.sleep(0.2)
    return body


def _captured(folder: Path) -> int:
    """Captures written so far (the writer runs on its own thread: wait until it settles)."""
    seen = -1
    for _ in range(25):
        count = len(list(folder.rglob("*.json"))) if folder.is_dir() else 0
        if count == seen:
            return count
        seen = count
        time.sleep(0.2)
    return seen
