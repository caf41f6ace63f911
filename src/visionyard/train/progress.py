"""What the trainer does with the loop's reports: log to the run and draw rich progress bars.

Progress goes to stderr (results belong on stdout). Without ``show``, nothing is drawn, which
is what library callers and tests get by default.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from visionyard.train.loop import EpochLike

OOM_TAG = "visionyard.train.oom_backoff"
BATCH_SIZE_TAG = "visionyard.train.batch_size"


class RunLike(Protocol):
    """The part of :class:`visionyard.tracking.TrackedRun` the hooks use."""

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...
    def set_tags(self, tags: dict[str, object]) -> None: ...


class TrainingProgress:
    """Loop hooks: per-epoch metrics to the run, OOM backoffs as tags, optional progress bars."""

    def __init__(self, run: RunLike, epochs: int, *, show: bool, console: Console | None = None):
        self.run = run
        self.backoffs: list[str] = []
        self._progress: Progress | None = None
        self._epochs: TaskID | None = None
        self._batches: TaskID | None = None
        self._console = console or Console(stderr=True)
        if show:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=False,
            )
            self._epochs = self._progress.add_task("epochs", total=epochs, status="")
            self._batches = self._progress.add_task("batches", total=None, status="")

    def __enter__(self) -> TrainingProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def epoch_started(self, epoch: int, batches: int) -> None:
        if self._progress is not None and self._batches is not None:
            self._progress.reset(self._batches, total=batches, status="")
            self._progress.update(self._batches, description=f"epoch {epoch}")

    def batch_done(self, loss: float) -> None:
        if self._progress is not None and self._batches is not None:
            self._progress.update(self._batches, advance=1, status=f"loss {loss:.4f}")

    def epoch_ended(self, result: EpochLike) -> None:
        self.run.log_metrics(result.epoch, result.metrics())
        if self._progress is not None and self._epochs is not None:
            self._progress.update(self._epochs, advance=1, status=result.status())

    def backoff(self, old: int, new: int) -> None:
        """An out-of-memory error halved the batch size: tag the run and warn."""
        self.backoffs.append(f"{old}->{new}")
        self.run.set_tags({OOM_TAG: ",".join(self.backoffs), BATCH_SIZE_TAG: new})
        if self._progress is not None:  # visionyard.train.oom logs the warning as well
            self._progress.console.print(
                f"[yellow]warning:[/] out of memory at batch size {old}; continuing with {new}",
                highlight=False,
            )

    def finish(self, stopped_early: bool, epochs_run: int) -> None:
        if self._progress is not None and self._epochs is not None and stopped_early:
            self._progress.update(self._epochs, total=epochs_run, status="stopped early")
