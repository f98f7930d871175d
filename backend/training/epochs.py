"""The epoch loop that search and training share (issue #20).

A job (:class:`EpochJob`) says what one step and the end of one epoch do; :func:`run_epochs`
does the rest the same way for both: the per-step progress events (every ``step_event_every``-th
one also written to ``events.jsonl``), the timing of the epoch, the ``epoch`` event, and the
early stop. The job writes its own files at the end of an epoch (weights, checkpoint, history),
so that what a resumed run reads is the job's business, not the loop's.
"""

from __future__ import annotations

import time
from typing import Any, Generator, Iterable, Protocol

from .runs import RunEvent, RunFolder


class EpochJob(Protocol):
    epochs: int   # epochs in all
    steps: int    # steps per epoch

    def begin_epoch(self, epoch: int) -> None:
        """Learning rates, schedules, ``train()`` mode."""

    def batches(self, epoch: int) -> Iterable[Any]:
        """This epoch's batches (at least ``steps`` of them; the loop takes ``steps``)."""

    def step(self, epoch: int, step: int, batch: Any) -> tuple[dict, str]:
        """One optimisation step: the step event's data and message."""

    def end_epoch(self, epoch: int, steps: list[dict], started: float) -> tuple[dict, str]:
        """Validation, files and checkpoint after the epoch (begun at ``time.time() == started``):
        the epoch event's record and message."""

    def finished(self) -> bool:
        """True to stop before the next epoch (early stop)."""


def run_epochs(run: RunFolder, job: EpochJob, start: int, step_event_every: int) -> Generator[RunEvent, None, int]:
    """Epochs ``start .. job.epochs - 1`` of ``job``; returns the number of the next epoch."""
    total = job.epochs * job.steps
    epoch = start
    while epoch < job.epochs and not job.finished():
        job.begin_epoch(epoch)
        t0, per_step = time.time(), []
        for step, batch in enumerate(job.batches(epoch)):
            if step >= job.steps:
                break
            data, message = job.step(epoch, step, batch)
            per_step.append(data)
            event = RunEvent("step", epoch * job.steps + step + 1, total, message, epoch, data)
            if (step + 1) % step_event_every == 0:
                run.emit(event)
            yield event
        record, message = job.end_epoch(epoch, per_step, t0)
        yield run.emit(RunEvent("epoch", (epoch + 1) * job.steps, total, message, epoch, record))
        epoch += 1
    return epoch
