"""Progress of long work: the event type, the runner that drives a progress generator, the
terminal progress bar.

Long backend routines (:func:`backend.recon.reconstruct_volume`, dataset preparation,
evaluation) are generators that yield :class:`Progress` events and return their result;
:func:`run` drives one with a callback. The CLI and the demo show the events with
:class:`ProgressBar`, the napari widgets with a progress widget (same generators). Training and
search runs yield :class:`backend.training.runs.RunEvent`, which carries ``done``/``total``/
``message`` too, so the same bar shows them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Generator


@dataclass(frozen=True)
class Progress:
    """One progress event: ``done`` of ``total`` units, with a short message."""

    done: int
    total: int
    message: str = ""


def run(gen: Generator[Progress, None, object], on_progress: Callable[[Progress], None] | None = None):
    """Drive a progress generator to its end and return its return value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)


class ProgressBar:
    """A tqdm bar on stderr fed with progress events (anything with ``done``, ``total`` and
    ``message``); ``quiet`` shows nothing."""

    def __init__(self, quiet: bool = False, unit: str = "slice"):
        self.quiet = quiet
        self.unit = unit
        self.bar = None

    def __call__(self, event: Progress) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if self.bar is None or self.bar.total != event.total:
            self.close()
            self.bar = tqdm(total=event.total, unit=self.unit, file=sys.stderr, leave=False, dynamic_ncols=True)
        self.bar.set_description_str(event.message[:40])
        self.bar.update(event.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
