"""Warnings that third-party code silences for itself must not fail the suite when another
thread drops that silence.

``warnings.catch_warnings()`` swaps the process-wide filter list, so before Python 3.14 a thread
leaving its block restores the list it saw on entering, dropping a filter another thread added
meanwhile. FastAPI silences pydantic's ``UnsupportedFieldAttributeWarning`` that way while it
builds routes; a test that built a server app while other servers' threads decoded images and
called MLflow (each in its own ``catch_warnings`` block) failed on that warning in CI
(``test_a_server_restarted_mid_rollout_resumes_it_from_the_registry``). Here FastAPI's filter is
dropped for good, as the race does, and building a route must still work under the suite's
warning filters (``pyproject.toml``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi import FastAPI
from PIL import Image


def test_a_route_builds_when_fastapis_own_warning_filter_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(warnings, "simplefilter", lambda *args, **kwargs: None)
    app = FastAPI()

    @app.get("/v2/models/{name}/ready")
    async def ready(name: str) -> dict[str, str]:
        return {"name": name}

    assert [r.path for r in app.routes][-1] == "/v2/models/{name}/ready"


class _SwapForbidden:
    """Stands in for ``warnings.catch_warnings``: the code under test must not swap the list."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("catch_warnings swapped the process-wide warning filters")


@contextmanager
def _no_filter_swaps() -> Iterator[None]:
    # not monkeypatch: pytest's own warning capture must still work when the test ends
    saved = warnings.catch_warnings
    warnings.catch_warnings = _SwapForbidden  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        warnings.catch_warnings = saved  # type: ignore[misc]


def test_decoding_images_leaves_the_process_warning_filters_alone() -> None:
    """Images are decoded on the server's worker threads, twice per image before: each
    ``catch_warnings`` block there could drop a filter that another thread was relying on."""
    from tests.fixtures.images import encode
    from visionyard.contract.image import decode_rgb

    with _no_filter_swaps():
        assert decode_rgb(encode(Image.new("RGB", (8, 6)))).size == (8, 6)


def test_registry_calls_leave_the_process_warning_filters_alone() -> None:
    """The server's alias polls call MLflow from worker threads through ``quiet_mlflow``."""
    from visionyard.tracking.mlflow_model import quiet_mlflow

    with _no_filter_swaps(), quiet_mlflow():
        pass


def test_pillows_bomb_warning_is_still_silent_and_the_image_refused() -> None:
    """Pillow warns between its limit and twice its limit; our own, lower limit refuses the
    image with one error, and Pillow's warning must not escape even where warnings are errors."""
    from tests.fixtures.images import bomb_png
    from visionyard.contract.image import decode_rgb
    from visionyard.errors import ImageTooLargeError

    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    pixels = int(limit * 1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageTooLargeError, match="too large|exceeds|pixels"):
            decode_rgb(bomb_png(pixels // 10_000, 10_000))


def test_mlflows_noload_warning_is_still_silent() -> None:
    from visionyard.tracking.mlflow_model import quiet_mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quiet_mlflow():
            warnings.warn(
                "The ``noload`` loader strategy is deprecated", DeprecationWarning, stacklevel=1
            )
