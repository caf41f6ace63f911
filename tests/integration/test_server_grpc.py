"""The OIP v2 gRPC service over a real socket: every RPC, typed and raw contents, statuses."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.runtime import COLOURS, write_colour_bundle, write_detector_bundle
from tests.fixtures.serving import bomb_png, encoded, server
from visionyard.serving.app import RunningServer
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc
from visionyard.serving.sources import LocalBundleSource

RED, BLUE = COLOURS["red"], COLOURS["blue"]
Tensor = pb.ModelInferRequest.InferInputTensor


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("grpc")
    sources = {
        "colour": LocalBundleSource(write_colour_bundle(root / "colour").path, "2"),
        "det": LocalBundleSource(write_detector_bundle(root / "det").path),
    }
    with server(sources, max_body_bytes=1_000_000) as srv:
        yield srv


@pytest.fixture(scope="module")
def stub(running: RunningServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(running.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _raw_images(*images: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in images)


def _image_request(model: str, *images: bytes, **kwargs: object) -> pb.ModelInferRequest:
    tensor = Tensor(name="image", datatype="BYTES", shape=[len(images)])
    return pb.ModelInferRequest(
        model_name=model, inputs=[tensor], raw_input_contents=[_raw_images(*images)], **kwargs
    )


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()  # type: ignore[no-any-return]


def test_health_and_metadata(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="colour")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="colour", version="2")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="colour", version="5")).ready
    server_meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server_meta.name == "visionyard"
    assert "classification" in server_meta.extensions
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="colour", version="2"))
    assert list(meta.versions) == ["2"]
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [
        ("input", "FP32", [-1, 3, 8, 8]),
        ("image", "BYTES", [-1]),
    ]
    assert "top_labels" in [o.name for o in meta.outputs]


def test_infer_typed_contents(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    tensor = np.zeros((1, 3, 8, 8), np.float32)
    tensor[0, 2] = 1.0
    request = pb.ModelInferRequest(
        model_name="colour",
        id="g1",
        inputs=[
            Tensor(
                name="input",
                datatype="FP32",
                shape=[1, 3, 8, 8],
                contents=pb.InferTensorContents(fp32_contents=tensor.reshape(-1).tolist()),
            )
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="top_labels")],
    )
    response = stub.ModelInfer(request)
    assert response.id == "g1"
    assert response.model_version == "2"
    assert not response.raw_output_contents
    assert response.outputs[0].contents.bytes_contents[0] == b"blue"


def test_infer_raw_contents_images_and_classification(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    wanted = pb.ModelInferRequest.InferRequestedOutputTensor(
        name="logits", parameters={"classification": pb.InferParameter(int64_param=1)}
    )
    request = _image_request("colour", encoded(RED), encoded(BLUE, fmt="PNG"), outputs=[wanted])
    response = stub.ModelInfer(request)
    assert list(response.outputs[0].shape) == [2, 1]
    raw = response.raw_output_contents[0]
    assert raw.endswith(b":2:blue")
    assert b":0:red" in raw


def test_infer_raw_fp32_and_detection(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    tensor = np.zeros((1, 3, 64, 64), np.float32)
    request = pb.ModelInferRequest(
        model_name="det",
        inputs=[Tensor(name="input", datatype="FP32", shape=[1, 3, 64, 64])],
        raw_input_contents=[tensor.tobytes()],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="detection_boxes")],
    )
    response = stub.ModelInfer(request)
    boxes = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(1, 2, 4)
    assert boxes[0, 0].tolist() == [8.0, 8.0, 24.0, 24.0]
    image = encoded(RED, size=(128, 128), fmt="PNG")
    detections = stub.ModelInfer(_image_request("det", image)).outputs
    names = [o.name for o in detections]
    assert "detections" in names


BAD = [
    ("unknown model", lambda: _image_request("nope", encoded(RED)), grpc.StatusCode.NOT_FOUND),
    (
        "unknown version",
        lambda: _image_request("colour", encoded(RED), model_version="9"),
        grpc.StatusCode.NOT_FOUND,
    ),
    (
        "corrupt image",
        lambda: _image_request("colour", b"garbage"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    ("zero-byte image", lambda: _image_request("colour", b""), grpc.StatusCode.INVALID_ARGUMENT),
    ("bomb image", lambda: _image_request("colour", bomb_png()), grpc.StatusCode.INVALID_ARGUMENT),
    (
        "wrong datatype",
        lambda: pb.ModelInferRequest(
            model_name="colour",
            inputs=[Tensor(name="input", datatype="INT32", shape=[1, 3, 8, 8])],
            raw_input_contents=[b"\0" * 768],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "raw size mismatch",
        lambda: pb.ModelInferRequest(
            model_name="colour",
            inputs=[Tensor(name="input", datatype="FP32", shape=[1, 3, 8, 8])],
            raw_input_contents=[b"\0" * 100],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "raw count mismatch",
        lambda: pb.ModelInferRequest(
            model_name="colour",
            inputs=[Tensor(name="input", datatype="FP32", shape=[1, 3, 8, 8])],
            raw_input_contents=[b"", b""],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "typed count mismatch",
        lambda: pb.ModelInferRequest(
            model_name="colour",
            inputs=[
                Tensor(
                    name="input",
                    datatype="FP32",
                    shape=[1, 3, 8, 8],
                    contents=pb.InferTensorContents(fp32_contents=[1.0]),
                )
            ],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "truncated BYTES",
        lambda: pb.ModelInferRequest(
            model_name="colour",
            inputs=[Tensor(name="image", datatype="BYTES", shape=[1])],
            raw_input_contents=[struct.pack("<I", 50) + b"abc"],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "oversized message",
        lambda: _image_request("colour", b"\0" * 1_100_000),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
]


@pytest.mark.parametrize(("why", "make", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_the_matching_status(
    stub: pb_grpc.GRPCInferenceServiceStub, why: str, make: object, code: grpc.StatusCode
) -> None:
    assert _code(lambda: stub.ModelInfer(make())) == code  # type: ignore[operator]
    assert stub.ServerReady(pb.ServerReadyRequest()).ready


def test_unknown_model_metadata_is_not_found(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert _code(lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="x"))) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: stub.ModelReady(pb.ModelReadyRequest(name="x"))) == (
        grpc.StatusCode.NOT_FOUND
    )


def test_request_id_comes_back(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    _, call = stub.ServerLive.with_call(pb.ServerLiveRequest(), metadata=[("x-request-id", "g-7")])
    assert ("x-request-id", "g-7") in list(call.trailing_metadata())


_DATATYPES = st.sampled_from(["FP32", "FP16", "INT32", "INT64", "UINT8", "BYTES", "BOOL", "XX", ""])
_TENSORS = st.builds(
    Tensor,
    name=st.sampled_from(["input", "image", "other", ""]),
    datatype=_DATATYPES,
    shape=st.lists(st.integers(-2, 70), max_size=5),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    model=st.sampled_from(["colour", "det", "nope"]),
    tensors=st.lists(_TENSORS, max_size=2),
    raw=st.lists(st.binary(max_size=300), max_size=3),
    version=st.sampled_from(["", "1", "2", "x"]),
)
def test_fuzzed_messages_never_break_the_server(
    stub: pb_grpc.GRPCInferenceServiceStub,
    model: str,
    tensors: list[Tensor],
    raw: list[bytes],
    version: str,
) -> None:
    request = pb.ModelInferRequest(
        model_name=model, model_version=version, inputs=tensors, raw_input_contents=raw
    )
    code = _status(lambda: stub.ModelInfer(request, timeout=10))
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


def _status(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_callers_that_give_up_do_not_stall_the_server(
    running: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    """Calls cancelled while queued (the client hung up) leave both workers serving."""
    big = encoded(RED, size=(640, 480))
    for _ in range(3):
        channel = grpc.insecure_channel(running.grpc_target)
        hasty = pb_grpc.GRPCInferenceServiceStub(channel)
        calls = [hasty.ModelInfer.future(_image_request("colour", big)) for _ in range(32)]
        model = running.server.pool.current("colour")
        deadline = time.monotonic() + 10
        while model.in_flight < 8 and time.monotonic() < deadline:  # wait for a queue, not a
            time.sleep(0.001)  # fixed time: a loaded machine must not let it drain first
        channel.close()  # every call still queued is cancelled on the server
        assert any(call.cancelled() or call.exception() is not None for call in calls)
    time.sleep(0.3)
    for _ in range(4):
        answer = stub.ModelInfer(_image_request("colour", encoded(RED)), timeout=10)
        assert answer.model_name == "colour"
