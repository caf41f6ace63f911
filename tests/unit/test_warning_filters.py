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

import pytest
from fastapi import FastAPI


def test_a_route_builds_when_fastapis_own_warning_filter_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(warnings, "simplefilter", lambda *args, **kwargs: None)
    app = FastAPI()

    @app.get("/v2/models/{name}/ready")
    async def ready(name: str) -> dict[str, str]:
        return {"name": name}

    assert [r.path for r in app.routes][-1] == "/v2/models/{name}/ready"
