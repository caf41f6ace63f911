"""Silence third-party warnings without ``warnings.catch_warnings``.

``catch_warnings`` swaps the process-wide filter list and, before Python 3.14, is not thread-safe:
a thread leaving its block restores the list it saw on entering and drops any filter another
thread added meanwhile (FastAPI's own, for one). The server decodes images and calls MLflow on
worker threads many times a second, so those paths add a permanent ``ignore`` filter instead, and
add it again if someone else's block has dropped it or an earlier filter would shadow it. The
check is a scan of the filter list, a few microseconds.
"""

from __future__ import annotations

import re
import warnings


def ignore_warning(category: type[Warning], message: str = "") -> None:
    """Make sure ``warnings`` ignores ``category`` (whose text matches ``message``, a regex)."""
    item = ("ignore", re.compile(message, re.I) if message else None, category, None, 0)
    for entry in warnings.filters:
        if entry == item:
            return
        action, _, entry_category, _, _ = entry
        if action != "ignore" and issubclass(category, entry_category):
            break  # an earlier filter (say "error") would win: ours goes in front of it
    warnings.filterwarnings("ignore", message=message, category=category)
