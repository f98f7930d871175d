"""The Search and Train widgets: launch ``nascsmri search|train`` as a process, follow it live.

This module is the entry point the plugin manifest names (``_jobs:SearchWidget``,
``_jobs:TrainWidget``); the code lives in one module per concern:

* :mod:`~napari_nascsmri._job_widget`: :class:`JobWidget`, the shared base (settings, layout),
  with :mod:`~napari_nascsmri._job_run` (launching, stopping, attaching, following the events);
* :mod:`~napari_nascsmri._search_widget`: :class:`SearchWidget`;
* :mod:`~napari_nascsmri._train_widget`: :class:`TrainWidget` and the hand-over of its best
  weights to the reconstruction widget;
* :mod:`~napari_nascsmri._genotype_store`: the known genotypes (shipped, HAND_A3, found by
  searches) that the Search widget lists and the Train widget offers for NasN.

A job keeps running when its widget or napari closes (it is in its own session); *Attach*
picks it up again.
"""

from ._search_widget import SearchWidget
from ._train_widget import TrainWidget

__all__ = ["SearchWidget", "TrainWidget"]
