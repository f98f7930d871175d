"""The Train widget: launch and follow a training (``nascsmri train``), hand on its weights.

:class:`TrainWidget` adds the model settings (a known genotype for NasN, from
:mod:`napari_nascsmri._genotype_store`) to :class:`~napari_nascsmri._job_widget.JobWidget`. A
finished training's ``RUN/best.safetensors`` can be handed to the reconstruction widget
(:func:`use_in_reconstruction`, the *Use in reconstruction widget* button, and the
``TrainWidget.weights_ready`` signal).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, PushButton, SpinBox
from psygnal import Signal

from backend.runfiles import BEST_WEIGHTS

from ._genotype_store import (
    _genotype_choices,
    ensure_genotype_file,
    genotype_events,
    known_genotypes,
    remember_genotype,
)
from ._job_process import job_argv
from ._job_widget import DEFAULT_RUNS_DIR, JobWidget
from ._shared import FROM_FILE, _notify

if TYPE_CHECKING:
    import napari


def find_reconstruction_widget(viewer: napari.viewer.Viewer):
    """The ReconstructionWidget docked in ``viewer``'s window, or None."""
    from ._widget import ReconstructionWidget

    window = viewer.window
    docks = getattr(window, "dock_widgets", None)  # napari >= 0.6.2: inner widgets
    if docks is None:
        docks = {name: dock.inner_widget() for name, dock in window._dock_widgets.items()}
    for widget in docks.values():
        if isinstance(widget, ReconstructionWidget):
            return widget
    return None


def use_in_reconstruction(viewer: napari.viewer.Viewer, model: str, weights: str | os.PathLike,
                          dock: bool = True):
    """Select ``model`` with the weights file ``weights`` in the reconstruction widget.

    Docks a reconstruction widget first when none is docked (``dock``); returns the widget
    (None when there is none and ``dock`` is False).
    """
    widget = find_reconstruction_widget(viewer)
    if widget is None and dock:
        _, widget = viewer.window.add_plugin_dock_widget("napari-nascsmri", "Reconstruction")
    if widget is None:
        return None
    widget.method.value = model
    widget.weights.value = FROM_FILE
    widget.weights_file.value = Path(weights)
    return widget


class TrainWidget(JobWidget):
    """Launch and follow a training (``nascsmri train``); hand the best weights to reconstruction.

    Extra sub-widgets: ``model``, ``genotype`` (known genotypes, for nasn), ``blocks`` (dccnn,
    modl, rdn), ``use_button``. ``weights_ready(model, path)`` fires when a training finishes.
    """

    KIND = "train"
    weights_ready = Signal(str, str)

    def __init__(self, viewer: napari.viewer.Viewer):
        from backend.config import TRAIN_PRESETS, TrainConfig, network_model_names
        from backend.models.registry import DEFAULT_BLOCKS

        super().__init__(viewer, TrainConfig, TRAIN_PRESETS)
        self._default_blocks = DEFAULT_BLOCKS
        d = TrainConfig()
        self.model = ComboBox(label="model", choices=list(network_model_names()), value=d.model,
                              tooltip="the network to train (nasn: a cell from a genotype)")
        self.genotype = ComboBox(label="genotype", choices=_genotype_choices,
                                 tooltip="NasN cell: shipped, hand-made or found by a search")
        self.blocks = SpinBox(label="blocks", min=1, max=64, value=3,
                              tooltip="residual blocks (dccnn, modl) or recursions (rdn) per module")
        self.use_button = PushButton(text="Use in reconstruction widget", enabled=False,
                                     tooltip="select this run's best.safetensors in the reconstruction widget")
        self.model.changed.connect(self._on_model_changed)
        self.use_button.changed.connect(self.use_weights)
        genotype_events.changed.connect(self.genotype.reset_choices)
        genotype_events.found.connect(self._preselect_found)
        self._finish_layout([self.data, self.model, self.genotype, self.blocks, self.preset, self.epochs,
                             self.steps_per_epoch, self.crop, self.device, self.seed, self.out,
                             self._buttons, self.progress, self.status, self.use_button])
        self._on_model_changed()

    def _leave_registry(self) -> None:
        genotype_events.changed.disconnect(self.genotype.reset_choices)
        genotype_events.found.disconnect(self._preselect_found)

    def _preselect_found(self, path: str) -> None:
        """A search just found ``path``: select it (and NasN) unless a training runs here."""
        if self.running:
            return
        self.genotype.reset_choices()
        if path in [value for _, value in _genotype_choices()]:
            self.model.value = "nasn"
            self.genotype.value = path
            self.status.value = f"genotype of the finished search selected: {path}"

    def _on_model_changed(self, *_) -> None:
        model = self.model.value
        self.genotype.enabled = model == "nasn"
        self.blocks.enabled = model in self._default_blocks
        if model in self._default_blocks:
            self.blocks.value = self._default_blocks[model]

    def _show_settings(self, config, preset_only: bool = False) -> None:
        super()._show_settings(config, preset_only)
        if preset_only:
            return
        self.model.value = config.model
        if config.blocks:
            self.blocks.value = config.blocks
        if config.genotype:
            path = str(Path(config.genotype).resolve())
            if path not in [g.path for g in known_genotypes()]:
                path = remember_genotype(path).path
            self.genotype.reset_choices()
            self.genotype.value = path

    def _own_fields(self) -> dict:
        model = self.model.value
        genotype = ensure_genotype_file(self.genotype.value) if model == "nasn" and self.genotype.value else None
        return {"model": model, "genotype": genotype,
                "blocks": self.blocks.value if model in self._default_blocks else None}

    def argv(self, config, out, resume: bool = False) -> list[str]:
        return job_argv("train", config, out, resume)

    def default_run_dir(self) -> Path:
        return DEFAULT_RUNS_DIR / f"train-{self.model.value}-{self.preset.value}-{time.strftime('%Y%m%d-%H%M%S')}"

    @property
    def best_weights(self) -> Path | None:
        """``RUN/best.safetensors`` of the followed run, when it exists."""
        if self.run_dir is None:
            return None
        path = self.run_dir / BEST_WEIGHTS
        return path if path.is_file() else None

    def _on_done(self) -> None:
        if self.best_weights is not None:
            self.weights_ready.emit(self._run_model(), str(self.best_weights))
        super()._on_done()

    def _run_model(self) -> str:
        return self._run_settings.get("model") or self.model.value

    def _done_text(self) -> str:
        best = self.trace.summary.get("best") or {}
        text = "train: done"
        if best.get("psnr") is not None:
            text += f", best epoch {best['epoch'] + 1}: val PSNR {best['psnr']:.2f} dB"
        return text + f"; weights in {self.run_dir / BEST_WEIGHTS}"

    def _update_buttons(self) -> None:
        super()._update_buttons()
        self.use_button.enabled = self.best_weights is not None

    def use_weights(self, *_) -> Any:
        """Select this run's best weights (and model) in the docked reconstruction widget."""
        weights = self.best_weights
        if weights is None:
            _notify("warning", "napari-nascsmri: no best.safetensors in the run folder yet")
            return None
        widget = use_in_reconstruction(self.viewer, self._run_model(), weights)
        if widget is not None:
            self.status.value = f"{self._run_model()} with {weights} selected in the reconstruction widget"
        return widget
