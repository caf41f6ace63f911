"""The REST adapter (OIP v2 over HTTP/JSON and the binary tensor extension, ``:predict``):
types in, :mod:`visionyard.serving.dataplane` calls, types out. FastAPI documents the routes
(:mod:`.routes`); the hot paths run as plain ASGI (:mod:`.hot`)."""
