"""No-op servers: the transport's ceiling on this machine, for probe_transport_ceiling.py.

Each answers every inference call with the same stored answer (visionyard's own answer to one
of the bench's requests) and does nothing else: no decoding, no model, no batching, no logs,
no metrics. So each costs what the stack under visionyard costs per request and no more:

- ``rest``: a plain ASGI app on uvicorn (httptools, one event loop: visionyard's REST stack),
  which reads the whole request body and sends the stored JSON;
- ``grpc``: a ``grpc.aio`` server with the OIP v2 service (visionyard's gRPC stack), whose
  ``ModelInfer`` parses the request (protobuf) and returns the stored response message.

    python serving_noop.py rest PORT ANSWER_FILE
    python serving_noop.py grpc PORT ANSWER_FILE
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

JSON = [(b"content-type", b"application/json")]


def rest(port: int, answer: bytes) -> None:
    import uvicorn

    headers = [*JSON, (b"content-length", str(len(answer)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def grpc_server(port: int, answer: bytes) -> None:
    import grpc

    from visionyard.serving.proto import grpc_service_pb2 as pb
    from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc

    response = pb.ModelInferResponse.FromString(answer)

    class NoOp(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
            return response

    async def serve() -> None:
        server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(NoOp(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


if __name__ == "__main__":
    kind, port, answer_file = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    (rest if kind == "rest" else grpc_server)(port, answer_file.read_bytes())
