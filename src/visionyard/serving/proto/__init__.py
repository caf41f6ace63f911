"""Generated OIP v2 gRPC stubs (``scripts/gen-proto``); do not edit the ``*_pb2*`` files."""
