"""Structured JSON logs: one object per line; ``extra={"fields": {...}}`` adds keys.

:func:`configure_logging` (``visionyard serve``) puts the JSON handler on the root logger, so
every line the server writes to stderr is JSON: visionyard's own, uvicorn's (its loggers
propagate: the server gives uvicorn no ``log_config`` of its own, see
:func:`visionyard.serving.app._uvicorn`), Python warnings and MLflow's (told not to install its
own handler). Access lines (``visionyard.access``, one per REST request and gRPC call) carry
``request_id``, ``protocol``, ``model``, ``version``, ``client``, ``status`` and
``duration_ms``; a client error is logged at warning and a server error at error, both with the
domain ``error_code`` and the ``error`` message the client got.

Lines are written by a thread of their own (:class:`QueuedHandler`, like the standard
library's ``QueueHandler`` but bounded, and counting what it drops). A ``write`` to a stderr
that nobody reads (a stalled log shipper, a pipe to a hung process) blocks once the pipe's
buffer is full, and on the event loop that stalled every request (seen: ~200 requests into a
server whose stderr pipe nobody read, then the next one hung, and so did health and every other
call). Now up to ``serving.log_queue_lines`` lines wait; past that they are dropped and counted,
and the first line written after says how many (``dropped_lines``). The thread writes straight
to stderr's file descriptor and takes no lock while it writes, so such a server still exits at
once on SIGTERM (with ``sys.stderr``'s buffer in a blocked write, the exit waited for ever).
"""

from __future__ import annotations

import collections
import contextvars
import copy
import itertools
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from typing import IO, Any

from visionyard.serving.threads import name_os_thread

ACCESS = logging.getLogger("visionyard.access")
_REQUEST_ID = re.compile(r"^[\w.\-:]{1,128}$")
#: New request ids: 16 random hex digits fixed per process + a 16-digit counter (32 in all,
#: like a UUID's hex): unique without a random-number system call per request.
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count(1)
#: The id of the request the current task serves (set by :func:`request_id`; read by the
#: monitor, which names captured images after it).
_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("visionyard_request_id")
#: how long :meth:`QueuedHandler.flush` waits without a line written before it gives up (the
#: stream is stuck: what waits is lost at exit), and :meth:`QueuedHandler.close` for the writer
STUCK_S = 0.5
CLOSE_WAIT_S = 3.0


def request_id(given: str | None) -> str:
    """The client's ``X-Request-ID`` (or gRPC metadata) when it is sane, else a new one; it
    becomes the current task's :func:`current_request_id`."""
    rid = given if given and _REQUEST_ID.match(given) else f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
    _CURRENT.set(rid)
    return rid


def adopt_request_id(oip_id: str | None) -> str | None:
    """The OIP request ``id`` as the current request's id (when the client sent no
    ``X-Request-ID``), if it is sane; else None (the id given earlier stays)."""
    if oip_id and _REQUEST_ID.match(oip_id):
        _CURRENT.set(oip_id)
        return oip_id
    return None


def peer_host(peer: str) -> str:
    """The client's address from a gRPC peer (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer


def current_request_id() -> str:
    """The id of the request this task serves (a new one outside a request)."""
    rid = _CURRENT.get(None)
    return rid if rid is not None else f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # rendered by QueuedHandler where it was logged
            data["exception"] = record.exc_text
        return json.dumps(data, default=str, separators=(",", ":"))


def configure_logging(
    level: str = "INFO", stream: IO[str] | None = None, queue_lines: int = 10000
) -> logging.Handler:
    """Every log line of the process as JSON to ``stream`` (stderr), written by a thread of its
    own (:class:`QueuedHandler`, at most ``queue_lines`` waiting): visionyard's and uvicorn's at
    ``level``, other libraries' from warning up; returns the handler (``close`` writes what
    waits)."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # no handler of its own
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars
    writer = _writer(stream)
    writer.setFormatter(JsonFormatter())
    handler = QueuedHandler(writer, queue_lines)
    root = logging.getLogger()
    root.addHandler(handler)
    global _QUEUED
    _QUEUED = handler
    root.setLevel(logging.WARNING)
    for name in ("visionyard", "uvicorn"):
        logging.getLogger(name).setLevel(level.upper())
    logging.captureWarnings(True)
    return handler


def _writer(stream: IO[str] | None) -> logging.Handler:
    """``stream``'s handler; for stderr, one that writes to its file descriptor."""
    if stream is not None:
        return logging.StreamHandler(stream)
    try:
        return _FdHandler(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # stderr replaced by an object without one
        return logging.StreamHandler(sys.stderr)


class _FdHandler(logging.Handler):
    """Each line straight to a file descriptor (``os.write``): no Python buffer, so a write
    blocked on a pipe nobody reads holds no lock that the interpreter's exit needs (flushing
    ``sys.stderr``'s buffer would wait on it for ever)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:  # the stream is gone (a closed pipe): nowhere to say so
            pass


class _AccessLine:
    """An access line as it waits for the writer thread: what :class:`JsonFormatter` reads of a
    ``LogRecord``, without building one (and its caller lookup, copy and queue lock) on the
    event loop for every request (:func:`access`)."""

    __slots__ = ("created", "msecs", "levelno", "levelname", "fields")
    name = "visionyard.access"
    msg = "request"
    args = None
    exc_info = None
    exc_text = None

    def __init__(self, levelno: int, fields: dict[str, Any]) -> None:
        self.created = time.time()
        self.msecs = (self.created - int(self.created)) * 1000
        self.levelno = levelno
        self.levelname = logging.getLevelName(levelno)
        self.fields = fields

    def getMessage(self) -> str:  # noqa: N802 (LogRecord's name)
        return "request"


_STOP = object()


class QueuedHandler(logging.Handler):
    """Hand records to a thread that passes them to ``target``; never wait on it. At most
    ``capacity`` records wait; past that they are dropped and counted, and the next record the
    thread writes is followed by a warning with the count (``dropped_lines``).

    The records wait in a deque, and the writer is woken only when it sleeps (an ``Event`` set
    only when clear): a ``queue.Queue`` takes a lock and notifies a condition for every line,
    on the event loop of every request."""

    def __init__(self, target: logging.Handler, capacity: int) -> None:
        super().__init__()
        self._target = target
        self._capacity = capacity
        self._lines: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._writing = False
        self._written = 0
        self._dropped = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write, name="vy-log", daemon=True)
        self._thread.start()

    def takes_access_lines(self) -> bool:
        """Whether :func:`access` may hand lines straight to this handler: it is the only
        handler they reach, with nothing that filters or formats them otherwise."""
        return (
            not self.filters
            and self.level <= logging.INFO
            and isinstance(self._target.formatter, JsonFormatter)
            and self._thread.is_alive()
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # rendered here: the arguments and traceback may change or go once this returns;
            # on a copy, so that handlers after this one still see the record as it was logged
            queued = copy.copy(record)
            queued.msg, queued.args = record.getMessage(), None
            if record.exc_info:
                formatter = self._target.formatter or logging.Formatter()
                queued.exc_text = formatter.formatException(record.exc_info)
                queued.exc_info = None
            self.put(queued)
        except Exception:
            self.handleError(record)

    def put(self, line: logging.LogRecord | _AccessLine) -> None:
        """Queue a line for the writer (dropped and counted when ``capacity`` wait)."""
        if len(self._lines) >= self._capacity:
            with self._count_lock:
                self._dropped += 1
            return
        self._lines.append(line)
        if not self._wake.is_set():
            self._wake.set()

    def _write(self) -> None:
        name_os_thread("vy-log")  # its CPU shows apart in per-thread readings (/proc, top -H)
        while True:
            self._wake.wait()
            self._wake.clear()  # cleared before the deque is read: no line is left unseen
            while self._lines:
                self._writing = True
                line = self._lines.popleft()
                if line is _STOP:
                    self._writing = False
                    return
                # emit, not handle: handle would hold the target's lock through a blocked
                # write, and logging.shutdown at exit takes every handler's lock
                self._target.emit(line)
                with self._count_lock:
                    dropped, self._dropped = self._dropped, 0
                if dropped:
                    fields = {"dropped_lines": dropped}
                    message = f"{dropped} log lines dropped: the log stream was not read"
                    self._target.emit(logging.makeLogRecord({
                        "name": "visionyard.serving", "levelno": logging.WARNING,
                        "levelname": "WARNING", "msg": message, "fields": fields,
                    }))  # fmt: skip
                self._written += 1
                self._writing = False

    def _pending(self) -> bool:
        return bool(self._lines) or self._writing

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until what waits is written: at most ``timeout_s``, and no longer than
        :data:`STUCK_S` without a line written (a stream nobody reads)."""
        deadline = time.monotonic() + timeout_s
        written, moved = self._written, time.monotonic()
        while self._pending() and time.monotonic() < min(deadline, moved + STUCK_S):
            time.sleep(0.005)
            if self._written != written:
                written, moved = self._written, time.monotonic()
        if not self._pending():  # the writer is idle: the target's lock is free
            self._target.flush()

    def close(self) -> None:
        """Write what waits (unless the stream is stuck), then stop the thread."""
        if self._thread.is_alive():
            self.flush()
            if not self._pending():
                self._lines.append(_STOP)
                self._wake.set()
                self._thread.join(CLOSE_WAIT_S)
        self._target.close()
        super().close()


#: the handler :func:`configure_logging` installed (access lines go to it directly while it
#: is the only one they reach)
_QUEUED: QueuedHandler | None = None
_PARENT = logging.getLogger("visionyard")


def access(fields: dict[str, Any]) -> None:
    """One access line; a client error at warning, a server error at error. While the server's
    own handler is the only one the line reaches (no handler added to these loggers, as a
    test's ``caplog`` does), it goes to that handler's queue without a ``LogRecord``."""
    level = _level(fields)
    queued = _QUEUED
    if (
        queued is not None
        and ACCESS.isEnabledFor(level)
        and ACCESS.propagate
        and not ACCESS.handlers
        and not ACCESS.filters
        and not _PARENT.handlers
        and _PARENT.propagate
        and logging.root.handlers == [queued]
        and queued.takes_access_lines()
    ):
        queued.put(_AccessLine(level, fields))
        return
    ACCESS.log(level, "request", extra={"fields": fields})


#: Statuses that are the client's doing (REST 4xx; gRPC codes the adapter maps client errors
#: to); 503 (busy, draining) is logged at warning too: the server is working as designed.
_CLIENT_GRPC = frozenset(
    {"INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
     "UNAVAILABLE", "ALREADY_EXISTS", "FAILED_PRECONDITION", "OUT_OF_RANGE", "CANCELLED"}
)  # fmt: skip


def _level(fields: dict[str, Any]) -> int:
    status = fields.get("status")
    if isinstance(status, int):
        if status < 400:
            return logging.INFO
        return logging.WARNING if status < 500 or status == 503 else logging.ERROR
    if status in (None, "OK"):
        return logging.INFO
    return logging.WARNING if status in _CLIENT_GRPC else logging.ERROR
