"""Optional signatures over recorded digests, for registries that others can write to.

The registry's digest protects against an artifact store that others can write to; whoever
can also write the registry's tags could record a new digest. With ``registry.signing_key``
set, every digest visionyard records is signed (HMAC-SHA256 over the model, version, piece and
digest, so a signature cannot be moved to another version or piece) and every load refuses a
piece whose signature is missing or wrong. The standard library's :mod:`hmac` is the library
for this; only the subject format is ours.
"""

from __future__ import annotations

import hashlib
import hmac

from visionyard.errors import BundleIntegrityError


def subject(name: str, version: str, piece: str, digest: str) -> str:
    """What is signed: ``NAME/VERSION/PIECE@DIGEST`` (piece: ``bundle`` or ``variants/int8``)."""
    return f"{name}/{version}/{piece}@{digest}"


def sign(key: str, text: str) -> str:
    return "hmac-sha256:" + hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def check_signature(key: str, text: str, signature: str | None) -> None:
    """:class:`BundleIntegrityError` unless ``signature`` is ``key``'s signature of ``text``."""
    where = text.partition("@")[0]
    if not signature:
        raise BundleIntegrityError(
            where,
            "has no signature but registry.signing_key is set; refusing an unsigned piece "
            "(check and sign it with `visionyard bundle sign NAME/VERSION`)",
        )
    if not hmac.compare_digest(sign(key, text), signature):
        raise BundleIntegrityError(
            where, "its signature does not match (wrong key, or the recorded digest was changed)"
        )
