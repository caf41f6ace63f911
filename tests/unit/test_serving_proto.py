"""The generated gRPC stubs are in sync with the .proto, and the .proto is the OIP v2 service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from visionyard.serving.proto import grpc_service_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "src" / "visionyard" / "serving" / "proto"
GENERATED = ("grpc_service_pb2.py", "grpc_service_pb2.pyi", "grpc_service_pb2_grpc.py")


def test_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    env_python = {"PY": sys.executable}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-proto"), str(tmp_path)],
        check=True,
        env={**env_python, "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    fresh = tmp_path / "visionyard" / "serving" / "proto"
    for name in GENERATED:
        assert (fresh / name).read_text() == (PROTO_DIR / name).read_text(), (
            f"{name} is stale: run scripts/gen-proto"
        )


def test_service_and_field_numbers_follow_the_protocol() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert [m.name for m in service.methods] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
    request = pb.ModelInferRequest.DESCRIPTOR.fields_by_name
    assert request["raw_input_contents"].number == 7
    assert request["outputs"].number == 6
    response = pb.ModelInferResponse.DESCRIPTOR.fields_by_name
    assert response["raw_output_contents"].number == 6
    contents = pb.InferTensorContents.DESCRIPTOR.fields_by_name
    assert contents["bytes_contents"].number == 8
    assert contents["fp32_contents"].number == 6
