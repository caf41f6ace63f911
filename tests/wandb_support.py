"""Helpers for the W&B mirror tests: a recording fake ``wandb`` module, and a reader of the
records W&B's offline mode writes (``<dir>/wandb/offline-run-*/run-<id>.wandb``).

W&B 0.31 ships no Python reader of its run files (the writer is its Go core), so
:func:`read_records` parses the format: a 7-byte header (``:W&B``, magic ``0xBEE1``, version),
then LevelDB-log chunks in 32 KiB blocks (crc32 4 bytes, length 2, type 1: full, first, middle,
last), each record a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import importlib.machinery
import json
import struct
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32768
CHUNK_HEADER = 7


# -- reading what W&B wrote ------------------------------------------------------------------
def read_records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, record = CHUNK_HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # block trailer padding
            pos += left
            continue
        _, size, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        pos += CHUNK_HEADER
        if kind == 0:  # zero padding to the end of the block
            pos += left - CHUNK_HEADER
            continue
        chunk, pos = data[pos : pos + size], pos + size
        record = chunk if kind in (1, 2) else record + chunk
        if kind in (1, 4):
            parsed = pb.Record()  # type: ignore[attr-defined]
            parsed.ParseFromString(record)
            yield parsed


@dataclass
class OfflineRun:
    """What one offline W&B run holds, decoded from its records."""

    run_id: str
    job_type: str
    tags: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    started_ns: int = 0  # the run record's start time: the folder names sort by second only

    def artifact(self, name: str) -> dict[str, Any]:
        found = [a for a in self.artifacts if a["name"] == name]
        assert found, f"no artifact {name!r} in {[a['name'] for a in self.artifacts]}"
        return found[-1]


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under ``wandb_dir``, oldest first (by the start time each run records:
    two runs begun in the same second have folder names that sort by their random ids)."""
    runs = [_decode(path) for path in wandb_dir.glob("wandb/offline-run-*/run-*.wandb")]
    return sorted(runs, key=lambda run: run.started_ns)


def _decode(path: Path) -> OfflineRun:
    run: OfflineRun | None = None
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    exit_code = None
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run = OfflineRun(r.run_id, r.job_type, list(r.tags))
            run.started_ns = r.start_time.ToNanoseconds()
            config.update(_items(r.config.update))
        elif kind == "config":
            config.update(_items(record.config.update))
        elif kind == "history":
            history.append(_items(record.history.item))
        elif kind == "artifact":
            artifacts.append(_artifact(record.artifact))
        elif kind == "exit":
            exit_code = record.exit.exit_code
    assert run is not None, f"{path} has no run record"
    run.config, run.history, run.artifacts, run.exit_code = config, history, artifacts, exit_code
    return run


def _items(items: Any) -> dict[str, Any]:
    """Items as a dict; a nested key (``["samples/train", "_type"]``) becomes nested dicts."""
    out: dict[str, Any] = {}
    for item in items:
        *parents, leaf = [item.key] if item.key else list(item.nested_key)
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = json.loads(item.value_json)
    return out


def _artifact(a: Any) -> dict[str, Any]:
    return {
        "name": a.name,
        "type": a.type,
        "aliases": set(a.aliases),
        "metadata": json.loads(a.metadata or "{}"),
        "files": {c.path: c.ref or None for c in a.manifest.contents},
    }


# -- a fake wandb module -----------------------------------------------------------------------
class FakeRun:
    def __init__(self, module: FakeWandb, kwargs: dict[str, Any]) -> None:
        self.module, self.kwargs = module, kwargs
        self.id = kwargs.get("id") or f"fake{len(module.runs)}"
        self.config = FakeConfig(dict(kwargs.get("config") or {}))
        self.logged: list[dict[str, Any]] = []
        self.artifacts: list[tuple[Any, list[str]]] = []
        self.exit_code: int | None = None

    def define_metric(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, values: dict[str, Any]) -> None:
        if self.module.fail_log:
            raise RuntimeError("W&B is down")
        self.logged.append(values)

    def log_artifact(self, artifact: Any, aliases: list[str], **kwargs: Any) -> None:
        self.artifacts.append((artifact, aliases))

    def finish(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code


class FakeConfig:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def update(self, values: dict[str, Any], allow_val_change: bool = False) -> None:
        self.values.update(values)


class FakeArtifact:
    def __init__(self, name: str, type: str, metadata: Any = None, **kw: Any) -> None:  # noqa: A002
        self.name, self.type, self.metadata = name, type, metadata or {}
        self.files: dict[str, str | None] = {}

    def new_file(self, name: str, encoding: str = "utf-8") -> Any:
        self.files[name] = None
        return open(Path("/dev/null"), "w", encoding=encoding)  # noqa: SIM115

    def add_reference(self, uri: str, name: str, checksum: bool = True) -> None:
        self.files[name] = uri

    def add_dir(self, path: str) -> None:
        for p in Path(path).rglob("*"):
            if p.is_file():
                self.files[str(p.relative_to(path))] = None


class FakeWandb(types.ModuleType):
    """Stands in for ``wandb`` in ``sys.modules``; records runs, logs and artifacts."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
        self.runs: list[FakeRun] = []
        self.fail_log = False
        self.Artifact = FakeArtifact
        self.Image = lambda path, caption=None: ("image", path, caption)
        self.Table = lambda columns, data: ("table", columns, data)
        self.Settings = lambda **kw: kw

    def init(self, **kwargs: Any) -> FakeRun:
        run = FakeRun(self, kwargs)
        self.runs.append(run)
        return run
