"""The progress bar of ``visionyard export``: one step per stage the export reports.

The export library reports progress as messages (``checksumming the evaluation set``,
``quantizing int8 (100 calibration images)``, ``evaluating int8 on 250 images``, ...:
:data:`visionyard.export.variants.Progress`). :func:`step_bar` counts the stages the requested
variants go through, so each message advances a rich bar by one step and shows what runs now;
stages it did not foresee (pruning and fine-tuning) extend the total instead of overflowing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from visionyard.cli.console import err


def expected_steps(names: Sequence[str], registered: bool) -> int:
    """Stages of an export of variants ``names`` (fp32 first): the evaluation set's checksum,
    building each non-reference variant, evaluating and timing each; a registered version adds
    its download and the upload of the kept variants."""
    built = sum(1 for n in names[1:] if n == "fp16" or n == "int8" or n.endswith("-int8"))
    return 1 + built + 2 * len(names) + (2 if registered else 0)


@contextmanager
def step_bar(description: str, total: int) -> Iterator[Callable[[str], None]]:
    """A bar on stderr; the callback takes the message of the stage that starts now."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[stage]}"),
    )
    with Progress(*columns, console=err(), transient=False) as bar:
        task = bar.add_task(description, total=total, stage="")
        started = 0

        def advance(message: str) -> None:
            nonlocal started
            started += 1
            size = bar.tasks[0].total or total
            bar.update(task, completed=started - 1, total=max(size, started), stage=message)

        yield advance
        bar.update(task, completed=bar.tasks[0].total, stage="done")
