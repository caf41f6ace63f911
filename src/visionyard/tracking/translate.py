"""The boundary where MLflow, HTTP and database errors become visionyard domain errors.

Every call into mlflow from this package runs inside :func:`translate_errors`, so callers only
ever see :class:`~visionyard.errors.TrackingError` (or its subclass
:class:`~visionyard.errors.TrackingUnavailableError`) with a message that says what to check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException

from visionyard.errors import TrackingError, TrackingUnavailableError, VisionyardError

_CONNECTION_HINTS = (
    "connection refused",
    "max retries exceeded",
    "failed to establish a new connection",
    "name or service not known",
    "timed out",
    "could not connect",
    "connection failed",
)
_AUTH_CODES = {"PERMISSION_DENIED", "UNAUTHENTICATED"}
_AUTH_HINT = (
    "check the credentials (MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME and "
    "MLFLOW_TRACKING_PASSWORD) and that this user may write to the experiment"
)


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (safe for messages and logs)."""
    return re.sub(r"(//[^/:@]+):[^/@]*@", r"\1:***@", uri)


@contextmanager
def translate_errors(uri: str, action: str) -> Iterator[None]:
    """Re-raise third-party errors from the block as domain errors; ``action`` reads 'cannot …'."""
    try:
        yield
    except VisionyardError:
        raise
    except MlflowException as exc:
        raise from_mlflow(uri, action, exc) from exc
    except PermissionError as exc:
        raise TrackingError(
            f"cannot {action}: permission denied on {exc.filename or redact(uri)}; check that "
            "the tracking store and artifact folders are writable by this user"
        ) from exc
    except Exception as exc:
        translated = from_other(uri, action, exc)
        if translated is None:
            raise
        raise translated from exc


def from_mlflow(uri: str, action: str, exc: MlflowException) -> TrackingError:
    """The domain error for an :class:`MlflowException` raised while doing ``action``."""
    code = str(getattr(exc, "error_code", ""))
    message = _first_line(exc.message if hasattr(exc, "message") else str(exc))
    if _looks_unreachable(message) or _looks_unreachable(str(exc.__cause__ or "")):
        return TrackingUnavailableError(redact(uri), message)
    if code in _AUTH_CODES or re.search(r"\b(401|403)\b", message):
        return TrackingError(f"cannot {action} on {redact(uri)}: {message}; {_AUTH_HINT}")
    return TrackingError(f"cannot {action} on {redact(uri)}: {message}")


def from_other(uri: str, action: str, exc: Exception) -> TrackingError | None:
    """Database and network errors by type name (their packages are mlflow's dependencies)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    module = type(exc).__module__
    detail = _first_line(str(getattr(exc, "orig", None) or exc))
    if "OperationalError" in names or "InterfaceError" in names:
        return TrackingUnavailableError(redact(uri), detail)
    if module.startswith(("requests", "urllib3")) or isinstance(
        exc, ConnectionError | TimeoutError
    ):
        return TrackingUnavailableError(redact(uri), detail)
    if module.startswith("sqlalchemy"):
        return TrackingError(f"cannot {action} on {redact(uri)}: {detail}")
    if isinstance(exc, OSError):
        return TrackingError(f"cannot {action}: {detail}")
    return None


def _looks_unreachable(message: str) -> bool:
    lowered = message.lower()
    return any(hint in lowered for hint in _CONNECTION_HINTS)


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else "no detail"
