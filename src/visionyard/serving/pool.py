"""The model pool: one entry per served name, hot-swapped between versions without downtime.

A swap resolves the source (off the event loop), opens the new version (which verifies the
bundle's checksums), warms it up, starts its batcher and only then replaces the entry's current
version in one assignment on the event loop. Requests admitted before the switch keep their
reference to the old version and finish on it; it is retired when its last request is done.
A version that fails to resolve, load, verify or warm up leaves the old one serving (logged once
while it repeats, counted, shown as ``parameters.last_error``).

With a pinned variant (``serving.variant``) every version is opened on that variant; one that
lacks it is refused like a broken one (:func:`check_pinned_variant`). A version that failed is
remembered: polls skip it (without downloading it again, when the source can look its version
up first) until the source points elsewhere; an admin load retries it. An admin unload sticks:
polls leave the model unloaded until an admin loads it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from visionyard.bundle.store import Bundle, load_bundle
from visionyard.errors import BundleError, NotFoundError, VisionyardError
from visionyard.runtime.session import InferenceSession
from visionyard.serving.batching import BatchConfig, Batcher
from visionyard.serving.errors import ModelUnavailableError, client_message, redact_paths
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.model import Limits, LoadedModel
from visionyard.serving.polling import domain_error, poll
from visionyard.serving.sources import ModelSource, OpensItself, Resolved, lookup_version
from visionyard.serving.statistics import ModelStats
from visionyard.serving.threads import usable_cores

if TYPE_CHECKING:
    from visionyard.serving.monitoring import Monitoring

log = logging.getLogger("visionyard.serving")


@dataclass(frozen=True)
class PoolConfig:
    batch: BatchConfig = field(default_factory=BatchConfig)
    limits: Limits = field(default_factory=Limits)
    intra_op_threads: int = 1
    #: ORT threads of a second session for a batch that runs alone (idle server, empty queue),
    #: see :mod:`visionyard.serving.batching`; none when not above ``intra_op_threads``
    alone_intra_op_threads: int = field(default_factory=usable_cores)
    variant: str | None = None


@dataclass
class ModelEntry:
    name: str
    source: ModelSource
    current: LoadedModel | None = None
    state: str = "loading"
    last_error: str | None = None
    failed_version: str | None = None
    last_exception: VisionyardError | None = None
    failures: int = 0  # load failures so far (an admin load tells its own failure by it)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ModelPool:
    def __init__(
        self,
        sources: Mapping[str, ModelSource],
        config: PoolConfig,
        metrics: ServingMetrics,
        monitoring: Monitoring | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.monitoring = monitoring
        self._entries = {name: ModelEntry(name, source) for name, source in sources.items()}
        self._retiring: set[asyncio.Task[None]] = set()
        self._preloaded: dict[str, LoadedModel] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> ModelEntry:
        if name not in self._entries:
            raise NotFoundError("model", name, f"served models: {', '.join(self.names) or 'none'}")
        return self._entries[name]

    def current(self, name: str, version: str | None = None) -> LoadedModel:
        """The serving version of ``name`` (``version``, when given, must be it)."""
        entry = self.entry(name)
        model = entry.current
        if model is None:
            raise ModelUnavailableError(name, entry.state, entry.last_error or "")
        if version and version != model.version:
            raise NotFoundError(
                "model version", f"{name}/{version}", f"version {model.version} is served"
            )
        return model

    def acquire(self, name: str, version: str | None = None) -> LoadedModel:
        """Admit a request to the current version (synchronously: no swap in between)."""
        model = self.current(name, version)
        self.admit(model)
        return model

    def admit(self, model: LoadedModel) -> None:
        """Admit a request to ``model`` (any loaded version: a rollout's candidate too)."""
        model.acquire(self.config.limits)
        self.metrics.queue_depth.labels(model.name).inc()

    def release(self, model: LoadedModel) -> None:
        model.release()
        self.metrics.queue_depth.labels(model.name).dec()

    async def start(self) -> None:
        await asyncio.gather(*(self.refresh(name) for name in self.names))

    async def refresh_all(self, *, force: bool = False) -> dict[str, bool]:
        names = self.names
        swapped = await asyncio.gather(*(self.refresh(n, force=force) for n in names))
        return dict(zip(names, swapped, strict=True))

    async def refresh(self, name: str, *, force: bool = False) -> bool:
        """Resolve the source; load and switch when its version changed. True if switched."""
        entry = self.entry(name)
        async with entry.lock:
            return await self._refresh(entry, force)

    async def load(self, name: str) -> bool:
        """An admin load: :meth:`refresh` with ``force``, raising the error of a load that
        failed (the old version, if any, keeps serving). Loads at once run one at a time."""
        entry = self.entry(name)
        async with entry.lock:
            failures = entry.failures
            swapped = await self._refresh(entry, force=True)
            if entry.failures != failures and entry.last_exception is not None:
                raise entry.last_exception
            return swapped

    async def _refresh(self, entry: ModelEntry, force: bool) -> bool:
        if entry.state == "unloaded" and not force:
            return False  # an admin unloaded it: only an admin load brings it back
        adopted, version = await self._adopt_preloaded(entry)
        if adopted:
            return True
        resolved = await self._resolve(entry, force, version)
        if resolved is None or not self._wanted(entry, resolved, force):
            return False
        return await self._swap(entry, resolved)

    async def _resolve(self, entry: ModelEntry, force: bool, known: str | None) -> Resolved | None:
        """The source's answer; None when it failed, or when the source's version (``known``:
        this poll looked it up; else looked up before any download) is the one serving or one
        that failed already."""
        version = known
        # a poll is said when it moves; after a failure with nothing serving, not (logged once)
        quiet = not force and (entry.current is not None or entry.last_error is not None)
        hush = quiet and entry.current is None
        try:
            started = time.monotonic()
            if not quiet:
                log.info("looking up reference", extra={"fields": _fields(entry, None)})
            if version is None:
                version = await asyncio.to_thread(lookup_version, entry.source)
            if version is not None and not self._wanted_version(entry, version, force):
                return None
            # a source that cannot look its version up is resolved on every poll: not said
            level = logging.DEBUG if quiet and (version is None or hush) else logging.INFO
            log.log(level, "fetching version", extra={"fields": _fields(entry, version)})
            resolved = await asyncio.to_thread(entry.source.resolve)
            took = {**_fields(entry, resolved.version), "seconds": _since(started)}
            log.log(level, "fetched version", extra={"fields": took})
            return resolved
        except Exception as exc:  # any failure (an OSError while caching, too): recorded
            error = domain_error(exc)
            remembered = version if isinstance(error, BundleError) else None
            self.failed(entry, version, error, remember=remembered)
            return None

    async def unload(self, name: str) -> None:
        entry = self.entry(name)
        async with entry.lock:
            old, entry.current, entry.state = entry.current, None, "unloaded"
            self.metrics.unloaded(name)
            if old is not None:
                self._unwatch(old)
                await old.retire()

    async def watch(self, interval_s: float) -> None:
        """Poll every source forever, outliving any failure (cancel the task to stop)."""
        await poll(self, interval_s)

    async def close(self) -> None:
        for entry in self._entries.values():
            if entry.current is not None:
                await entry.current.retire()
                entry.current = None
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def _wanted(self, entry: ModelEntry, resolved: Resolved, force: bool) -> bool:
        return self._wanted_version(entry, resolved.key, force)

    def _wanted_version(self, entry: ModelEntry, version: str, force: bool) -> bool:
        if entry.current is not None and entry.current.revision == version:
            return False
        return force or version != entry.failed_version

    async def open_version(self, name: str, source: ModelSource) -> LoadedModel | None:
        """Load ``source``'s version of ``name`` BESIDE the serving one (a rollout's candidate):
        resolved, verified, warmed and monitored like every load, but not served by default;
        None (logged and counted) when it fails. :meth:`adopt` or :meth:`retire` it later."""
        entry = self.entry(name)
        try:
            resolved = await asyncio.to_thread(source.resolve)
        except Exception as exc:
            self.failed(entry, None, domain_error(exc))
            return None
        return await self._load(entry, source, resolved, remember=False)

    def preload(self, name: str, model: LoadedModel) -> None:
        """Keep ``model`` (loaded by :meth:`open_version`: a rollout's candidate) ready: when
        ``name``'s source points at its version (a promotion), it is switched to as it is."""
        self._preloaded[self.entry(name).name] = model

    async def adopt(self, name: str, model: LoadedModel) -> bool:
        """Switch to the preloaded ``model`` now if the source points at it; True when it is
        the serving version (now or already)."""
        entry = self.entry(name)
        async with entry.lock:
            return entry.current is model or (await self._adopt_preloaded(entry))[0]

    async def retire(self, model: LoadedModel) -> None:
        """Stop a version loaded by :meth:`open_version` (after its requests finish), unless
        it became the serving version."""
        if self._preloaded.get(model.name) is model:
            del self._preloaded[model.name]
        if (entry := self._entries.get(model.name)) is not None and entry.current is model:
            return
        self._unwatch(model)
        await model.retire()

    async def _adopt_preloaded(self, entry: ModelEntry) -> tuple[bool, str | None]:
        """Switch to the preloaded version when the source points at it (one lookup): whether
        it did, and the version looked up (None: none was) for the rest of the poll."""
        model = self._preloaded.get(entry.name)
        if model is None or entry.state == "unloaded":
            return False, None
        try:
            version = await asyncio.to_thread(lookup_version, entry.source)
        except Exception:  # _resolve looks it up again and reports the failure
            return False, None
        adopted = version == model.version and self._preloaded.get(entry.name) is model
        if adopted:
            self._install(entry, self._preloaded.pop(entry.name))
        return adopted, version

    async def _swap(self, entry: ModelEntry, resolved: Resolved) -> bool:
        model = await self._load(entry, entry.source, resolved)
        if model is not None and not isinstance(resolved, OpensItself):
            model.revision = resolved.key  # a local bundle's: its version and folder stamp
        if model is None:
            return False
        self._install(entry, model)
        return True

    async def _load(
        self, entry: ModelEntry, source: ModelSource, resolved: Resolved, *, remember: bool = True
    ) -> LoadedModel | None:
        log.info("loading version", extra={"fields": _fields(entry, resolved.version)})
        started = time.monotonic()
        stats = ModelStats()
        try:
            if isinstance(resolved, OpensItself):  # a pipeline (not monitored)
                make = partial(self._batcher, entry, alone=None, stats=stats)
                args = (entry.name, self.config, make, entry.current, stats)
                opened = await asyncio.to_thread(resolved.open_model, *args)
            else:
                session, alone = await asyncio.to_thread(self._open, resolved)
        except Exception as exc:  # any failure: keep the old version serving
            skip = resolved.key if remember else None
            self.failed(entry, resolved.version, domain_error(exc), remember=skip)
            return None
        took = {**_fields(entry, resolved.version), "seconds": _since(started)}
        log.info("verified, loaded and warmed version", extra={"fields": took})
        if isinstance(resolved, OpensItself):
            opened.batcher.start()
            return opened
        batcher = self._batcher(entry, session, alone, stats)
        model = LoadedModel(entry.name, resolved.version, session, batcher, stats)
        if self.monitoring is not None:
            model.monitor = self.monitoring.attach(
                entry.name, model.version, session, source, resolved
            )
        model.batcher.start()
        return model

    def _install(self, entry: ModelEntry, model: LoadedModel) -> None:
        """Make ``model`` the entry's current version; retire the old one."""
        old, entry.current = entry.current, model  # the atomic switch
        entry.state, entry.last_error, entry.failed_version = "ready", None, None
        variant = model.variant
        reference = redact_paths(entry.source.reference)  # /metrics is open to any client
        self.metrics.loaded(entry.name, model.version, variant, reference)
        self.metrics.swaps.labels(entry.name).inc()
        log.info("serving version", extra={"fields": _fields(entry, model.version)})
        if old is not None:
            self._unwatch(old)
            task = asyncio.create_task(old.retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _unwatch(self, model: LoadedModel) -> None:
        """The version's monitor stops (its gauges go): the version is no longer served."""
        if self.monitoring is not None:
            self.monitoring.detach(model.monitor)

    def _open(self, resolved: Resolved) -> tuple[InferenceSession, InferenceSession | None]:
        """The version's session, and its wide twin for lone batches (when configured)."""
        bundle = load_bundle(resolved.path)  # verifies the checksums
        check_pinned_variant(bundle, self.config.variant, resolved.version)
        session = InferenceSession.from_bundle(
            bundle, variant=self.config.variant, intra_op_threads=self.config.intra_op_threads
        )
        session.run(session.dummy_input(1))  # warm-up: first run allocates and optimises
        threads = self.config.alone_intra_op_threads
        if threads <= self.config.intra_op_threads:
            return session, None
        alone = InferenceSession.from_bundle(
            session.bundle, variant=session.variant, intra_op_threads=threads
        )
        alone.run(alone.dummy_input(1))
        return session, alone

    def _batcher(
        self,
        entry: ModelEntry,
        session: InferenceSession,
        alone: InferenceSession | None,
        stats: ModelStats,
    ) -> Batcher:
        histogram = self.metrics.batch_size.labels(entry.name)
        run_alone = alone.run if alone is not None else None
        name = f"vy-{entry.name}"
        return Batcher(
            session.run, self.config.batch, histogram.observe, name, run_alone, stats.executed
        )

    def failed(
        self,
        entry: ModelEntry,
        version: str | None,
        exc: VisionyardError,
        *,
        remember: str | None = None,
    ) -> None:
        """Record a failure; ``remember`` is a version to skip until the source moves. The
        same failure again (a registry that stays unreachable, polled every few seconds) is
        logged at debug level: one error line per distinct failure, not one per poll."""
        message = f"{exc.code}: {client_message(exc)}"
        repeated, entry.last_error = message == entry.last_error, message
        entry.last_exception, entry.failures = exc, entry.failures + 1
        entry.failed_version = remember or entry.failed_version
        if entry.current is None and entry.state != "unloaded":
            entry.state = "failed"
        self.metrics.load_failures.labels(entry.name).inc()
        serving = entry.current.version if entry.current is not None else None
        what = f"version {version}" if version else "the source"
        still = f"version {serving} keeps serving" if serving else "no version is serving"
        fields = {**_fields(entry, version), "serving": serving, "error": f"{exc.code}: {exc}"}
        level = logging.DEBUG if repeated else logging.ERROR
        log.log(level, f"{what} failed to load; {still}", extra={"fields": fields})


def check_pinned_variant(bundle: Bundle, pinned: str | None, version: str) -> None:
    """Refuse a version that lacks the variant ``serving.variant`` pins (never serve another
    one silently); the error names the variants the version has."""
    if pinned is None or pinned in bundle.variants:
        return
    have = ", ".join(sorted(bundle.variants))
    raise NotFoundError(
        "variant",
        pinned,
        f"version {version} has only: {have}; serving.variant (--variant) pins {pinned!r}: "
        "export that variant for this version, or pin another one (unset: the fastest that "
        "passed)",
    )


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _fields(entry: ModelEntry, version: str | None) -> dict[str, str | None]:
    return {"model": entry.name, "version": version, "reference": entry.source.reference}
