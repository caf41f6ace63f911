"""The gRPC adapter (OIP v2 ``inference.GRPCInferenceService``): protobuf in,
:mod:`visionyard.serving.dataplane` calls, protobuf out."""
