"""Worker threads of the server: how many cores they may use, their OS names and priorities.

Linux only where it says so; elsewhere each helper does nothing (best effort).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading

log = logging.getLogger("visionyard.serving")


class HeldBatches:
    """Batches held right now by the workers of every batcher in the process (a batch runs on
    every core only when it is the only one held, :mod:`visionyard.serving.batching`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self, change: int) -> None:
        with self._lock:
            self.count += change


HELD = HeldBatches()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def name_os_thread(name: str) -> None:
    """Name the OS thread too (``top -H``, ``ps -L``); best effort, Linux only."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def idle_priority() -> bool:
    """Put the calling thread (Linux: scheduling is per thread) at the lowest priority, for
    good: ``SCHED_IDLE`` (it runs only on a core nothing else wants, and a waking thread of
    normal priority preempts it at once), else nice 19. No privilege is needed to lower a
    priority, but one is needed to raise it again, hence a thread of its own. True when
    lowered."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return True
        except OSError as exc:
            log.debug("SCHED_IDLE refused (%s); trying nice 19", exc)
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 19)  # the calling thread on Linux
            return True
        except OSError as exc:
            log.debug("nice 19 refused (%s)", exc)
    return False
