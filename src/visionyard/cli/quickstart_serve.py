"""The quickstart's serving chapter: serve ``shapes@production`` in this process, send real
images over REST (plain urllib) and gRPC (the OIP v2 stubs), then move the alias with the CLI
and watch the server follow it without a restart.
"""

from __future__ import annotations

import json
import secrets
import struct
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionyard.cli.quickstart import Story

SWAP_TIMEOUT_S = 60.0


def serve_story(story: Story) -> None:
    from visionyard.serving.app import running_server

    token = secrets.token_hex(16)
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
            )
        }
    )
    image = _sample_image(story)
    with running_server(settings) as server:
        story.console.print(f"serving http={server.http_url} grpc={server.grpc_target}")
        _show_requests(story, server.http_url, server.grpc_target, image)
        story.cli("promote", "shapes", "2", "--to", "production", "--reason", "hot swap demo")
        _wait_for_version(story, server.http_url, "2")
        _show_requests(story, server.http_url, server.grpc_target, image)
        story.cli("rollback", "shapes", "--reason", "quickstart: roll back while serving")
        _wait_for_version(story, server.http_url, "1")


def _sample_image(story: Story) -> Path:
    val = Path(story.facts["data_v1"]) / "val"
    return sorted(val.glob("star/*.png"))[0]


def _show_requests(story: Story, http_url: str, grpc_target: str, image: Path) -> None:
    data = image.read_bytes()
    rest = _rest_predict(http_url, data)
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


def _rest_predict(http_url: str, data: bytes) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{http_url}/v1/models/shapes:predict",
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


def _wait_for_version(story: Story, http_url: str, version: str) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < SWAP_TIMEOUT_S:
        with urllib.request.urlopen(f"{http_url}/v2/models/shapes", timeout=10) as response:  # noqa: S310
            served = json.loads(response.read()).get("versions", [None])[0]
        if served == version:
            story.console.print(
                f"server now answers with version {version} "
                f"({time.perf_counter() - started:.1f} s after the alias moved, no restart)"
            )
            return
        time.sleep(0.2)
    raise TimeoutError(f"the server did not switch to version {version} in {SWAP_TIMEOUT_S} s")
