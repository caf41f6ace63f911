"""End to end through the CLI on SQLite: gc (retention, never a live or recently held version)
and the server's bundle cache following an alias."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.registry_world import World, cli, client, registered

# -- gc ----------------------------------------------------------------------------------------


def test_gc_deletes_old_versions_and_their_artifacts_but_never_live_ones(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = registered(world, capsys, world.good, world.sharper, world.red_as_green,
                      world.reordered)  # fmt: skip
    assert cli(world, "promote", name, "1", "--to", "production") == 0
    reg = client(world)
    locations = {v: Path(reg.artifact_uri(reg.get_version(name, v))[7:]) for v in "1234"}
    assert all(p.is_dir() for p in locations.values())
    capsys.readouterr()
    assert cli(world, "gc", name, "--keep-last", "1", "--protect-events", "0", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would delete 2 version(s)" in out
    assert all(p.is_dir() for p in locations.values())

    assert cli(world, "gc", name, "--keep-last", "0", "--protect-events", "0") == 0
    out = capsys.readouterr().out
    assert "deleted 3 version(s)" in out
    assert "held by alias 'production'" in out
    reclaimed = int(out.split("version(s), ")[1].split(" bytes")[0].replace(",", ""))
    assert reclaimed > 3 * 2000
    assert locations["1"].is_dir()
    assert not any(locations[v].exists() for v in "234")
    assert [v.version for v in reg.list_versions(name)] == ["1"]
    assert reg.get_model(name).aliases == {"production": "1"}


def test_gc_protects_versions_in_recent_history(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = registered(world, capsys, world.good, world.sharper, world.red_as_green)
    assert cli(world, "promote", name, "1", "--to", "production") == 0
    assert cli(world, "promote", name, "2", "--to", "production") == 0
    assert cli(world, "gc", name, "--keep-last", "0") == 0
    out = capsys.readouterr().out
    assert "in the last 10 events of 'production'" in out
    assert sorted(v.version for v in client(world).list_versions(name)) == ["1", "2"]
    assert cli(world, "rollback", name) == 0


def test_resolve_bundle_for_the_server_follows_the_alias_and_caches(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from visionyard.bundle.store import load_bundle
    from visionyard.registry import resolve_bundle

    name = registered(world, capsys, world.good, world.sharper)
    assert cli(world, "promote", name, "1", "--to", "production") == 0
    cache = tmp_path / "cache"
    version, path = resolve_bundle(world.settings, f"{name}@production", cache)
    assert (version, path) == ("1", cache / name / "1")
    assert load_bundle(path).contract.labels[0] == "red"
    (path / "contract.json").write_text("{}")  # a damaged cache entry is fetched again
    assert resolve_bundle(world.settings, f"{name}@production", cache) == ("1", path)
    load_bundle(path)
    assert cli(world, "promote", name, "2", "--to", "production") == 0
    assert resolve_bundle(world.settings, f"{name}@production", cache)[0] == "2"
    assert resolve_bundle(world.settings, f"{name}/1", cache) == ("1", path)
