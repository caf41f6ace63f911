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

import contextvars
import copy
import itertools
import json
import logging
import os
import queue
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


class QueuedHandler(logging.Handler):
    """Hand records to a thread that passes them to ``target``; never wait on it. At most
    ``capacity`` records wait; past that they are dropped and counted, and the next record the
    thread writes is followed by a warning with the count (``dropped_lines``)."""

    def __init__(self, target: logging.Handler, capacity: int) -> None:
        super().__init__()
        self._target = target
        self._queue: queue.Queue[logging.LogRecord | None] = queue.Queue(capacity)
        self._dropped = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write, name="vy-log", daemon=True)
        self._thread.start()

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
            self._queue.put_nowait(queued)
        except queue.Full:
            with self._count_lock:
                self._dropped += 1
        except Exception:
            self.handleError(record)

    def _write(self) -> None:
        name_os_thread("vy-log")  # its CPU shows apart in per-thread readings (/proc, top -H)
        while (record := self._queue.get()) is not None:
            # emit, not handle: handle would hold the target's lock through a blocked write,
            # and logging.shutdown at exit takes every handler's lock
            self._target.emit(record)
            with self._count_lock:
                dropped, self._dropped = self._dropped, 0
            if dropped:
                fields = {"dropped_lines": dropped}
                message = f"{dropped} log lines dropped: the log stream was not read"
                self._target.emit(logging.makeLogRecord({
                    "name": "visionyard.serving", "levelno": logging.WARNING,
                    "levelname": "WARNING", "msg": message, "fields": fields,
                }))  # fmt: skip
            self._queue.task_done()
        self._queue.task_done()

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until what waits is written: at most ``timeout_s``, and no longer than
        :data:`STUCK_S` without a line written (a stream nobody reads)."""
        deadline = time.monotonic() + timeout_s
        left, moved = self._queue.unfinished_tasks, time.monotonic()
        while left and time.monotonic() < min(deadline, moved + STUCK_S):
            time.sleep(0.005)
            if self._queue.unfinished_tasks != left:
                left, moved = self._queue.unfinished_tasks, time.monotonic()
        if not left:  # the writer is idle: the target's lock is free
            self._target.flush()

    def close(self) -> None:
        """Write what waits (unless the stream is stuck), then stop the thread."""
        if self._thread.is_alive():
            self.flush()
            if not self._queue.unfinished_tasks:
                try:
                    self._queue.put_nowait(None)
                except queue.Full:  # filled by other threads since the check: writer busy
                    pass
                else:
                    self._thread.join(CLOSE_WAIT_S)
        self._target.close()
        super().close()


def access(fields: dict[str, Any]) -> None:
    """One access line; a client error at warning, a server error at error."""
    ACCESS.log(_level(fields), "request", extra={"fields": fields})


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
