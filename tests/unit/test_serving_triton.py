"""Triton's statistics as counted and as sent, and the two adapters' status tables agree."""

from __future__ import annotations

import grpc
from google.protobuf import json_format

from visionyard.serving.batching import Executed
from visionyard.serving.grpc.server import GRPC_STATUS
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.rest.hot import HTTP_STATUS
from visionyard.serving.statistics import ModelStats
from visionyard.serving.types import Timings

#: gRPC's status for an HTTP status (grpc/doc/statuscodes.md); 413 is either
_SAME = {
    400: {grpc.StatusCode.INVALID_ARGUMENT},
    401: {grpc.StatusCode.UNAUTHENTICATED},
    403: {grpc.StatusCode.PERMISSION_DENIED},
    404: {grpc.StatusCode.NOT_FOUND},
    413: {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED},
    503: {grpc.StatusCode.UNAVAILABLE},
}


def test_every_domain_code_gets_the_same_status_on_both_protocols() -> None:
    assert set(GRPC_STATUS) == set(HTTP_STATUS)
    for code, status in HTTP_STATUS.items():
        assert GRPC_STATUS[code] in _SAME[status], code


def test_statistics_count_requests_rows_and_executions_in_tritons_message() -> None:
    stats = ModelStats()
    stats.executed(Executed(batch_size=3, input_s=0.003, infer_s=0.010, output_s=0.001))
    stats.succeeded(2, Timings(0.002, 0.001, 0.010, 3, output=0.0005), total_s=0.02)
    stats.succeeded(1, Timings(0.001, 0.0, 0.010, 3), total_s=0.015)
    stats.failed(0.004)
    sent = stats.json("m", "7")
    message = json_format.ParseDict({"model_stats": [sent]}, pb.ModelStatisticsResponse())
    (row,) = message.model_stats
    assert (row.name, row.version) == ("m", "7")
    assert (row.inference_count, row.execution_count) == (3, 1)
    infer = row.inference_stats
    assert (infer.success.count, infer.success.ns) == (2, 35_000_000)
    assert (infer.fail.count, infer.fail.ns) == (1, 4_000_000)
    assert (infer.compute_infer.count, infer.compute_infer.ns) == (2, 20_000_000)
    assert infer.queue.ns == 1_000_000
    assert infer.compute_output.ns == 500_000
    (batch,) = row.batch_stats
    assert (batch.batch_size, batch.compute_infer.count, batch.compute_infer.ns) == (
        3,
        1,
        10_000_000,
    )
    assert row.last_inference > 0
