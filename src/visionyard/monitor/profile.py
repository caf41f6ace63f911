"""Reference profiles: what a version saw on its validation images, kept to compare with later.

:func:`collect_sample` runs images through a version's contract exactly as the server does:
each file is read once, its header gives a :class:`~visionyard.monitor.features.SourceInfo`,
it is decoded once (``decode_for_contract``), then ``session.preprocess`` / ``session.run`` /
``session.decode`` (the ONE pre- and postprocessing implementation) in batches; image and
prediction statistics come from :mod:`visionyard.monitor.features`. Reading and decoding run
in a small thread pool (Pillow releases the GIL) while the model runs.

A :class:`Profile` is stored as two files (:func:`save_profile`, :func:`load_profile`):

- ``profile.json``: metadata (model, version, task, contract digest, data digest, image count,
  created), feature summaries (for ``monitor show``), categorical counts, and the sha256 of
- ``profile.npz``: the sampled values of every continuous feature and the embedding rows,
  written with numpy and read with ``allow_pickle=False`` (no pickle anywhere).

Loading refuses an npz whose sha256 is not the one in the JSON, and (given the digest the
registry recorded) a JSON whose digest differs: :class:`~visionyard.errors.BundleIntegrityError`.
Measured (``.venv/bin/python bench/bench_monitor.py``, this shared 2-core machine): 1,000
640x480 JPEGs with a small CNN at 64x64 in 7.2 s (138 images/s; reading and decoding the next
batch overlaps the current batch's inference). With a ResNet-18-style net at 224x224 it took
150 s (``--resnet``, measured under load before that overlap): inference-bound, not the
statistics'. The colour test model profiles the 200 tiny images of the unit tests in ~0.4 s.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from visionyard.contract.preprocess import decode_for_contract
from visionyard.errors import BundleIntegrityError, ImageError
from visionyard.monitor.features import (
    Record,
    image_features,
    prediction_records,
    source_info,
)
from visionyard.monitor.sample import (
    DEFAULT_CAP,
    DEFAULT_EMBEDDING_CAP,
    FeatureSample,
    SampleBuilder,
)

if TYPE_CHECKING:
    from visionyard.runtime.session import InferenceSession

PROFILE_JSON = "profile.json"
PROFILE_NPZ = "profile.npz"
FORMAT = 1
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ProfileOptions:
    """Batch size, threads that read and decode, caps (values per feature, embedding rows)."""

    batch_size: int = 32
    readers: int = 2
    cap: int = DEFAULT_CAP
    embedding_cap: int = DEFAULT_EMBEDDING_CAP
    seed: int = 0


@dataclass(frozen=True)
class Collected:
    """A sample of a set of images, its data digest and the images that could not be read."""

    sample: FeatureSample
    data_digest: str
    unreadable: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Profile:
    """A version's reference: ``meta`` (JSON-able metadata) and the ``sample``."""

    meta: dict[str, Any]
    sample: FeatureSample

    @property
    def images(self) -> int:
        return self.sample.images


@dataclass(frozen=True)
class _Read:
    name: str
    sha256: str
    image: Image.Image | None
    record: Record | None
    problem: str = ""


def image_files(root: Path, split: str | None = None) -> list[Path]:
    """The images below ``root/split`` (or ``root`` when it has no such folder), sorted."""
    from visionyard.data.imagefolder import is_image_file

    base = root / split if split and (root / split).is_dir() else root
    found = (p for p in base.rglob("*") if p.is_file() and is_image_file(p))
    return sorted(p for p in found if not any(s.startswith(".") for s in p.relative_to(base).parts))


def collect_sample(
    session: InferenceSession,
    paths: Sequence[Path],
    *,
    root: Path | None = None,
    options: ProfileOptions | None = None,
    progress: Progress | None = None,
    capped: bool = True,
) -> Collected:
    """Statistics of ``paths`` through the session's contract (see the module docstring)."""
    opts = options or ProfileOptions()
    builder = SampleBuilder(
        cap=opts.cap if capped else None,
        embedding_cap=opts.embedding_cap if capped else None,
        seed=opts.seed,
    )
    digest = hashlib.sha256()
    unreadable: list[tuple[str, str]] = []
    done = 0
    for batch in _read_batches(session, paths, root, opts):
        for item in batch:
            digest.update(f"{item.name}\0{item.sha256}\n".encode())
            if item.problem:
                unreadable.append((item.name, item.problem))
        for record in _predict(session, [b for b in batch if b.image is not None]):
            builder.add(record)
        done += len(batch)
        if progress is not None:
            progress(done, len(paths))
    return Collected(builder.build(), "sha256:" + digest.hexdigest(), unreadable)


def build_profile(
    session: InferenceSession,
    paths: Sequence[Path],
    *,
    root: Path | None = None,
    about: dict[str, Any] | None = None,
    options: ProfileOptions | None = None,
    progress: Progress | None = None,
) -> Profile:
    """The reference profile of ``paths`` (``about``: extra metadata, e.g. name and version)."""
    collected = collect_sample(session, paths, root=root, options=options, progress=progress)
    contract = session.contract
    meta = {
        "format": FORMAT, **(about or {}), "task": contract.task,
        "contract_digest": contract.digest(), "data_digest": collected.data_digest,
        "images": collected.sample.images, "unreadable": len(collected.unreadable),
        "embedding_output": contract.embedding_output,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    return Profile(meta, collected.sample)


def save_profile(profile: Profile, folder: Path) -> str:
    """Write ``profile.json`` and ``profile.npz`` into ``folder``; returns the profile's digest
    (``sha256:`` of the JSON bytes, which hold the npz's sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    npz = _npz_bytes(profile.sample)
    (folder / PROFILE_NPZ).write_bytes(npz)
    sample = profile.sample
    body = {
        **profile.meta, "npz_sha256": hashlib.sha256(npz).hexdigest(),
        "summary": sample.summary(), "counts": sample.categorical,
        "embedding_rows": 0 if sample.embeddings is None else len(sample.embeddings),
    }  # fmt: skip
    text = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
    (folder / PROFILE_JSON).write_bytes(text)
    return "sha256:" + hashlib.sha256(text).hexdigest()


def load_profile(folder: Path, expected_digest: str | None = None, *, what: str = "") -> Profile:
    """Read a saved profile, refusing one whose files are not what was recorded."""
    where = what or str(folder)
    text = _read(folder / PROFILE_JSON, where)
    if (
        expected_digest is not None
        and "sha256:" + hashlib.sha256(text).hexdigest() != expected_digest
    ):
        raise BundleIntegrityError(
            where, f"{PROFILE_JSON} is not the one recorded ({expected_digest[:19]}...): "
            "the profile was changed or truncated; build it again with visionyard monitor profile",
        )  # fmt: skip
    body = _parse(text, where)
    npz = _read(folder / PROFILE_NPZ, where)
    if hashlib.sha256(npz).hexdigest() != body.get("npz_sha256"):
        raise BundleIntegrityError(
            where, f"{PROFILE_NPZ} does not match the sha256 in {PROFILE_JSON}"
        )
    return Profile(_meta(body), _sample(npz, body, where))


def _read_batches(
    session: InferenceSession, paths: Sequence[Path], root: Path | None, opts: ProfileOptions
) -> Iterator[list[_Read]]:
    """Batches of read images; the next batch is read while the caller runs the current one."""
    size = max(1, opts.batch_size)
    chunks = [paths[start : start + size] for start in range(0, len(paths), size)]
    with ThreadPoolExecutor(max_workers=max(1, opts.readers)) as pool:

        def submit(index: int) -> list[Future[_Read]]:
            if index >= len(chunks):
                return []
            return [pool.submit(_read_one, session, path, root) for path in chunks[index]]

        pending = submit(0)
        for index in range(len(chunks)):
            current, pending = pending, submit(index + 1)
            yield [future.result() for future in current]


def _read_one(session: InferenceSession, path: Path, root: Path | None) -> _Read:
    name = path.relative_to(root).as_posix() if root else path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _Read(name, "", None, None, f"cannot read file ({exc.strerror or exc})")
    sha = hashlib.sha256(data).hexdigest()
    try:
        image = decode_for_contract(data, session.contract)
    except ImageError as exc:
        return _Read(name, sha, None, None, exc.problem)
    return _Read(name, sha, image, image_features(image, source_info(data)))


def _predict(session: InferenceSession, items: Sequence[_Read]) -> list[Record]:
    if not items:
        return []
    batch = session.preprocess([item.image for item in items if item.image is not None])
    outputs = session.run(batch.tensor)
    results = session.decode(outputs, batch.metas)
    predictions = prediction_records(outputs, results, session.contract, batch.metas)
    return [i.record.merge(p) for i, p in zip(items, predictions, strict=True) if i.record]


def _npz_bytes(sample: FeatureSample) -> bytes:
    arrays = {f"continuous.{k}": np.asarray(v, np.float64) for k, v in sample.continuous.items()}
    if sample.embeddings is not None:
        arrays["embeddings"] = np.asarray(sample.embeddings, np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleIntegrityError(
            where, f"cannot read {path.name} ({exc.strerror or exc})"
        ) from exc


def _parse(text: bytes, where: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleIntegrityError(where, f"{PROFILE_JSON} is not valid JSON ({exc})") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise BundleIntegrityError(
            where, f"{PROFILE_JSON} is not a visionyard profile (format {FORMAT})"
        )
    return body


def _meta(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("summary", "counts")}


def _sample(npz: bytes, body: dict[str, Any], where: str) -> FeatureSample:
    try:
        with np.load(io.BytesIO(npz), allow_pickle=False) as arrays:
            values = {k: np.asarray(arrays[k]) for k in arrays.files}
    except (OSError, ValueError, EOFError) as exc:
        raise BundleIntegrityError(where, f"{PROFILE_NPZ} cannot be read ({exc})") from exc
    continuous = {
        k.removeprefix("continuous."): v.astype(np.float64)
        for k, v in values.items() if k.startswith("continuous.")
    }  # fmt: skip
    counts = {str(k): {str(c): int(n) for c, n in v.items()} for k, v in body["counts"].items()}
    embeddings = values.get("embeddings")
    rows = None if embeddings is None else embeddings.astype(np.float32)
    return FeatureSample(int(body["images"]), continuous, counts, rows)
