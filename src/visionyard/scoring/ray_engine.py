"""The Ray engine: the same scoring as the local engine, as a Ray Data job.

Ray is imported only here, inside functions, so that visionyard works without it. The job:

- the driver lists the files and cuts them into Arrow blocks of (index, path, name) rows;
- ``map_batches`` runs :class:`Scorer`, a callable class, on an actor pool: each actor holds ONE
  runtime session (ONNX Runtime with one intra-op thread, ``num_cpus=1``), reads its batch of
  files itself (in parallel with the other actors), scores it with
  :func:`visionyard.scoring.core.score_paths` and writes the rows as one file
  ``part-<first index>.<jsonl|csv>`` under the output folder, atomically (a retried task
  rewrites the same file), then returns only counts;
- the bundle travels through Ray's object store: the driver sends the files of the bundle it
  fetched and verified, each actor writes them to a private folder and verifies them again
  against the digest the driver computed. Workers therefore need no access to the registry; they
  do need the images and the output folder at the same paths (shared storage on a cluster).

Connecting: ``address`` (or ``RAY_ADDRESS``) ``None``/``local`` starts a local Ray; ``auto``
joins the local cluster; ``HOST:PORT`` or ``ray://HOST:PORT`` is first probed with a plain TCP
connection bounded by ``connect_timeout_s``, so a cluster that does not answer is one clear
error in seconds instead of Ray's own long retry loop. An already initialised Ray (tests, a
notebook) is used as it is and left running.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visionyard.bundle.store import Bundle, load_bundle
from visionyard.errors import ConfigError, DependencyMissingError
from visionyard.runtime.session import InferenceSession
from visionyard.scoring.core import Summary, score_paths
from visionyard.scoring.local import Plan
from visionyard.scoring.writers import Format, Task, write_rows

Progress = Callable[[int, int], None]
LOCAL_ADDRESSES = ("", "local")
DEFAULT_PORTS = {"ray://": 10001, "": 6379}
MAX_BLOCK_BATCHES = 64


@dataclass(frozen=True)
class RayJob:
    """Where to run and write: the cluster address, the output folder and format, the work plan
    (``plan.threads``: actors, 0 = one per CPU of the cluster), the variant to pin."""

    address: str | None
    output: Path
    fmt: Format
    plan: Plan
    variant: str | None = None
    connect_timeout_s: float = 10.0


def score_ray(
    bundle: Bundle, paths: Sequence[Path], job: RayJob, progress: Progress | None = None
) -> Summary:
    """Score ``paths`` on Ray; rows are written as part files under ``job.output``."""
    with ray_cluster(job) as ray:
        return run_job(ray, bundle, paths, job, progress)


@contextmanager
def ray_cluster(job: RayJob) -> Iterator[Any]:
    """The ``ray`` module, connected for ``job`` (its output folder checked first); a Ray
    started here is shut down on leaving."""
    ray = import_ray()
    prepare_output(job.output)
    handlers = _signal_handlers()
    started_here = connect(ray, job.address, job.connect_timeout_s)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
            _restore(handlers)  # ray.init installs a SIGTERM handler and keeps it after shutdown


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _signal_handlers() -> list[Any]:
    if threading.current_thread() is not threading.main_thread():
        return []
    return [signal.getsignal(number) for number in _SIGNALS]


def _restore(handlers: list[Any]) -> None:
    for number, handler in zip(_SIGNALS, handlers, strict=False):
        if handler is not None:
            signal.signal(number, handler)


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise DependencyMissingError("Ray (ray[data])", "ray") from exc
    return ray


def prepare_output(folder: Path) -> None:
    """The output folder must be new or empty: part files of two jobs must never mix."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(
            f"--output {folder} must be a new or empty folder with --engine ray "
            "(it receives one part file per batch)"
        )
    folder.mkdir(parents=True, exist_ok=True)


def connect(ray: Any, address: str | None, timeout_s: float) -> bool:
    """Initialise Ray (see the module docstring); True when this call started it."""
    if ray.is_initialized():
        return False
    address = address if address is not None else os.environ.get("RAY_ADDRESS")
    local = address is None or address in LOCAL_ADDRESSES
    if address is not None and not local and address != "auto":
        probe(address, timeout_s)
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if local:
        options["include_dashboard"] = False
        ray.init(**options)
        return True
    assert address is not None
    _init_within(ray, address, timeout_s, options)
    return True


def _init_within(ray: Any, address: str, timeout_s: float, options: dict[str, Any]) -> None:
    """``ray.init(address)`` bounded by ``timeout_s``: a port that answers TCP but is no Ray
    (or a Ray client handshake that stalls) would otherwise keep Ray retrying for minutes."""
    failure: list[BaseException] = []

    def join() -> None:
        try:
            ray.init(address=address, **options)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=join, name="vy-ray-connect", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise ConfigError(
            f"the Ray cluster at {address} did not answer within {timeout_s:g} s; "
            "check --ray-address or RAY_ADDRESS"
        )
    if failure:
        exc = failure[0]
        raise ConfigError(f"cannot join the Ray cluster at {address}: {_reason(exc)}") from exc


def probe(address: str, timeout_s: float) -> None:
    """A TCP connection to the cluster's port within ``timeout_s``, or :class:`ConfigError`."""
    scheme = "ray://" if address.startswith("ray://") else ""
    host, _, port = address.removeprefix(scheme).rpartition(":")
    if not host or not port.isdigit():
        host, port = address.removeprefix(scheme), str(DEFAULT_PORTS[scheme])
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else _reason(exc)
        raise ConfigError(
            f"the Ray cluster at {address} does not answer ({reason} within {timeout_s:g} s); "
            "check --ray-address or RAY_ADDRESS"
        ) from exc


def run_job(
    ray: Any, bundle: Bundle, paths: Sequence[Path], job: RayJob, progress: Progress | None
) -> Summary:
    """The Ray Data job on a connected ``ray`` (see the module docstring)."""
    from ray.data import ActorPoolStrategy

    _quiet(ray)
    cpus = job.plan.threads or max(1, int(ray.cluster_resources().get("CPU", 1)))
    actors = max(1, min(cpus, -(-len(paths) // job.plan.batch_size)))  # no idle actors
    dataset = ray.data.from_arrow(_blocks(paths, job.plan.batch_size, actors))
    options = {"pack": [ray.put(pack_bundle(bundle))], "digest": bundle.digest(),
               "variant": job.variant, "output": str(job.output.resolve()), "fmt": job.fmt,
               "top_k": job.plan.top_k}  # fmt: skip
    scored = dataset.map_batches(
        Scorer, fn_constructor_kwargs=options, batch_size=job.plan.batch_size,
        compute=ActorPoolStrategy(size=actors), num_cpus=1, batch_format="numpy",
    )  # fmt: skip
    started, done, failed, variant = time.perf_counter(), 0, 0, job.variant or ""
    for row in scored.iter_rows():
        done, failed = done + int(row["images"]), failed + int(row["failed"])
        variant = str(row["variant"])
        if progress is not None:
            progress(done, len(paths))
    return Summary(done, failed, time.perf_counter() - started, variant, "ray")


def _blocks(paths: Sequence[Path], batch_size: int, actors: int) -> list[Any]:
    """Arrow tables of (index, path, name): whole batches per block, several blocks per actor
    so that the pool stays busy, at most ``MAX_BLOCK_BATCHES`` batches each."""
    import pyarrow as pa

    total = -(-len(paths) // batch_size)
    batches = max(1, min(MAX_BLOCK_BATCHES, total // (actors * 4)))
    size = batches * batch_size
    return (
        [
            pa.table(
                {
                    "index": pa.array(range(start, start + len(chunk)), pa.int64()),
                    "path": [str(p.resolve()) for p in chunk],
                    "name": [str(p) for p in chunk],
                }
            )  # fmt: skip
            for start in range(0, len(paths), size)
            for chunk in [paths[start : start + size]]
        ]
        or [pa.table({"index": pa.array([], pa.int64()), "path": [], "name": []})]
    )


def pack_bundle(bundle: Bundle) -> dict[str, bytes]:
    """Every file of a verified bundle folder, by relative path."""
    root = bundle.path
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def unpack_bundle(files: dict[str, bytes], target: Path, digest: str) -> Bundle:
    """Write a packed bundle under ``target`` and verify it (checksums and ``digest``)."""
    for rel, data in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return load_bundle(target, expected_digest=digest)


class Scorer:
    """The Ray Data callable class: one runtime session per actor (see the module docstring)."""

    def __init__(
        self, pack: list[Any], digest: str, variant: str | None, output: str, fmt: Format,
        top_k: int | None,
    ) -> None:  # fmt: skip
        import ray

        self._folder = tempfile.TemporaryDirectory(prefix="vy-ray-bundle-")
        bundle = unpack_bundle(ray.get(pack[0]), Path(self._folder.name), digest)
        self._session = InferenceSession.from_bundle(bundle, variant=variant)
        self._output, self._fmt, self._top_k = Path(output), fmt, top_k
        from visionyard.scoring.writers import ranked_columns

        self._columns = ranked_columns(bundle.contract, top_k)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths, names = [str(p) for p in batch["path"]], [str(n) for n in batch["name"]]
        rows = score_paths(self._session, paths, self._top_k, names)
        task: Task = self._session.contract.task
        target = self._output / f"part-{int(batch['index'][0]):09d}.{self._fmt}"
        write_rows(target, rows, self._fmt, task, self._columns)
        failed = sum(row.error is not None for row in rows)
        return {"images": np.array([len(rows)]), "failed": np.array([failed]),
                "variant": np.array([self._session.variant])}  # fmt: skip


def _quiet(ray: Any) -> None:
    """No Ray Data progress bars or execution banners: the CLI draws its own bar."""
    with warnings.catch_warnings():  # Ray Data warns about its own deprecated defaults
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
