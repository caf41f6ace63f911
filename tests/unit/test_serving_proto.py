"""The generated gRPC stubs are in sync with the .proto, and the .proto is the OIP v2 service."""

from __future__ import annotations

import json
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
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    ]
    request = pb.ModelInferRequest.DESCRIPTOR.fields_by_name
    assert request["raw_input_contents"].number == 7
    assert request["outputs"].number == 6
    response = pb.ModelInferResponse.DESCRIPTOR.fields_by_name
    assert response["raw_output_contents"].number == 6
    contents = pb.InferTensorContents.DESCRIPTOR.fields_by_name
    assert contents["bytes_contents"].number == 8
    assert contents["fp32_contents"].number == 6


#: Run in a child process: tritonclient registers its own ``inference.*`` messages.
_TRITON_FIELDS = """
import json
from tritonclient.grpc import model_config_pb2, service_pb2
out = {}
for module in (service_pb2, model_config_pb2):
    def walk(desc):
        out[desc.full_name] = {f.name: [f.number, f.type, f.label] for f in desc.fields}
        for nested in desc.nested_types:
            walk(nested)
    for desc in module.DESCRIPTOR.message_types_by_name.values():
        walk(desc)
methods = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
out["rpcs"] = {m.name: [m.input_type.full_name, m.output_type.full_name] for m in methods}
print(json.dumps(out))
"""


def test_every_field_is_wire_compatible_with_tritons() -> None:
    """Each message and field we declare exists in Triton's protos (the copies tritonclient
    ships) with the same number, type and cardinality; each rpc has Triton's message types."""
    result = subprocess.run(
        [sys.executable, "-c", _TRITON_FIELDS], capture_output=True, text=True, check=True
    )
    triton = json.loads(result.stdout)
    ours: dict[str, dict[str, list[int]]] = {}

    def walk(desc: object) -> None:
        ours[desc.full_name] = {  # type: ignore[attr-defined]
            f.name: [f.number, f.type, f.label]
            for f in desc.fields  # type: ignore[attr-defined]
        }
        for nested in desc.nested_types:  # type: ignore[attr-defined]
            walk(nested)

    for desc in pb.DESCRIPTOR.message_types_by_name.values():
        walk(desc)
    for message, fields in ours.items():
        assert message in triton, f"{message} is not one of Triton's messages"
        for name, spec in fields.items():
            assert triton[message].get(name) == spec, f"{message}.{name}: {spec}"
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        types = [method.input_type.full_name, method.output_type.full_name]
        assert triton["rpcs"][method.name] == types, method.name
