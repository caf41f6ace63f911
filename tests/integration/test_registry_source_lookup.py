"""The server's alias poll (:meth:`RegistrySource.lookup`) on a real SQLite registry: the
version an alias points at, in one cheap read per poll.

Each poll used to build a new registry client and search registered models (which loads the
latest versions of the model through subqueries) and then read the version: ~20 ms of CPU per
model per poll on this machine, paid twice per poll while a rollout's candidate was loaded,
and measured as a few per cent of served throughput at a 1 s poll (bench_rollout).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.fixtures.cli import run, store_flags
from tests.registry_support import log_colour_run
from visionyard.errors import NotFoundError
from visionyard.serving.registry_source import RegistrySource
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient


def test_an_alias_poll_is_one_cheap_read_and_follows_the_alias(
    tracking_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s, name = tracking_settings, f"poll-{uuid.uuid4().hex[:8]}"
    for number in range(2):
        run_id = log_colour_run(s, tmp_path, sharpness=10.0 + number)
        code, _, err = run(capsys, *store_flags(s), "register", run_id, "--name", name)
        assert code == 0, err
    assert run(capsys, *store_flags(s), "promote", name, "1", "--to", "production")[0] == 0
    source = RegistrySource(f"{name}@production", s)
    assert source.lookup() == "1"

    calls: dict[str, int] = {"search": 0, "client": 0}
    search, make = MlflowClient.search_registered_models, RegistryClient.from_settings.__func__

    def counted_search(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        calls["search"] += 1
        return search(self, *args, **kwargs)

    def counted_client(cls: type[RegistryClient], settings: Settings) -> RegistryClient:
        calls["client"] += 1
        return make(cls, settings)  # type: ignore[no-any-return]

    monkeypatch.setattr(MlflowClient, "search_registered_models", counted_search)
    monkeypatch.setattr(RegistryClient, "from_settings", classmethod(counted_client))
    assert [source.lookup() for _ in range(3)] == ["1", "1", "1"]
    assert calls == {"search": 0, "client": 0}

    assert run(capsys, *store_flags(s), "promote", name, "2", "--to", "production")[0] == 0
    assert source.lookup() == "2"  # the next poll sees the alias move

    with pytest.raises(NotFoundError, match="aliases of .*: production"):
        RegistrySource(f"{name}@canary", s).lookup()
