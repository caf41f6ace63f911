"""Settings layering and provenance: default < file < env < flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionyard.errors import ConfigError
from visionyard.settings import effective_values, load_settings


def test_defaults_are_reported_as_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_settings(environ={})
    assert loaded.settings.serving.http_port == 8000
    assert loaded.sources["serving.http_port"] == "default"
    assert loaded.config_file is None
    assert set(loaded.sources) == set(effective_values(loaded.settings))


def test_layers_override_in_order(tmp_path: Path) -> None:
    cfg = tmp_path / "vy.toml"
    cfg.write_text('log_level = "DEBUG"\n[serving]\nhttp_port = 9000\ngrpc_port = 9001\n')
    env = {"VISIONYARD_SERVING__GRPC_PORT": "9101", "VISIONYARD_TRACKING__URI": "http://h:5000"}
    loaded = load_settings(cfg, {"tracking.uri": "http://flag:1"}, environ=env)
    s = loaded.settings
    assert (s.log_level, s.serving.http_port, s.serving.grpc_port) == ("DEBUG", 9000, 9101)
    assert s.tracking.uri == "http://flag:1"
    assert loaded.sources["log_level"] == "file"
    assert loaded.sources["serving.http_port"] == "file"
    assert loaded.sources["serving.grpc_port"] == "env"
    assert loaded.sources["tracking.uri"] == "flag"
    assert loaded.sources["serving.host"] == "default"


def test_yaml_file_and_env_pointer(tmp_path: Path) -> None:
    cfg = tmp_path / "vy.yaml"
    cfg.write_text("registry:\n  aliases: [dev, prod]\n")
    loaded = load_settings(environ={"VISIONYARD_CONFIG": str(cfg)})
    assert loaded.settings.registry.aliases == ["dev", "prod"]
    assert loaded.sources["registry.aliases"] == "file"


def test_json_list_from_env() -> None:
    loaded = load_settings(environ={"VISIONYARD_REGISTRY__ALIASES": '["a","b"]'})
    assert loaded.settings.registry.aliases == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[serving]\nhttp_port = 'x'\n", "serving.http_port"),
        ("[serving]\nbogus = 1\n", "serving.bogus"),
        ("[images]\nmax_pixels = -5\n", "images.max_pixels"),
        ("not toml [", "cannot read config file"),
    ],
)
def test_bad_file_names_the_field(tmp_path: Path, content: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg, environ={})


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Path("/nonexistent/vy.toml"), environ={})


def test_default_tracking_uri_is_explicit_sqlite(tmp_path: Path) -> None:
    loaded = load_settings(flags={"home": tmp_path / "state"}, environ={})
    uri = loaded.settings.tracking_uri()
    assert uri == f"sqlite:///{(tmp_path / 'state' / 'mlflow.db').resolve()}"


def test_deprecated_decode_workers_is_accepted_and_ignored() -> None:
    """Configs written for earlier versions still load (the server logs a warning)."""
    settings = load_settings(None, {}, environ={"VISIONYARD_SERVING__DECODE_WORKERS": "4"})
    assert settings.settings.serving.decode_workers == 4
    assert settings.settings.serving.inference_workers == 2
