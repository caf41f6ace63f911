"""The exception tree: every domain code has a CLI exit code, messages name the fix."""

from __future__ import annotations

import inspect

from visionyard import errors
from visionyard.cli.console import EXIT_CODES


def _error_classes() -> list[type[errors.VisionyardError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, errors.VisionyardError)
    ]


def test_every_code_has_an_exit_code() -> None:
    codes = {cls.code for cls in _error_classes()}
    assert codes - set(EXIT_CODES) == set()
    assert all(code not in (0, 2) for code in EXIT_CODES.values())


def test_every_class_is_in_the_docstring_tree() -> None:
    doc = errors.__doc__ or ""
    missing = [cls.__name__ for cls in _error_classes() if cls.__name__ not in doc]
    assert missing == []


def test_structured_messages_name_the_fix() -> None:
    too_large = errors.ImageTooLargeError("x.png", 100000, 100000, 40_000_000)
    assert "VISIONYARD_IMAGES__MAX_PIXELS" in str(too_large)
    assert too_large.code == "image.too_large"
    assert isinstance(too_large, errors.ImageError)
    unavailable = errors.TrackingUnavailableError("http://h:1", "connection refused")
    assert "VISIONYARD_TRACKING__URI" in str(unavailable)
    missing = errors.DependencyMissingError("torch", "torch")
    assert "pip install 'visionyard[torch]'" in str(missing)
    corrupt = errors.CorruptImagesError("/d", [(f"img{i}.png", "truncated") for i in range(12)])
    assert "12 unreadable" in str(corrupt)
    assert "and 2 more" in str(corrupt)
