"""Bearer tokens for the admin API and, optionally, the inference API (constant-time compare)."""

from __future__ import annotations

import hmac

from visionyard.serving.errors import AdminDisabledError, UnauthorizedError


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def token_matches(expected: str, given: str | None) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def check_admin(expected: str | None, header: str | None) -> None:
    """Admin calls need the configured admin token; with none configured they are disabled."""
    if expected is None:
        raise AdminDisabledError()
    if not token_matches(expected, bearer(header)):
        raise UnauthorizedError("this admin call")


def check_inference(expected: str | None, header: str | None) -> None:
    """Inference calls need a token only when one is configured."""
    if expected is not None and not token_matches(expected, bearer(header)):
        raise UnauthorizedError("inference")
