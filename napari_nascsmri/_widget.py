"""The reconstruction widget: mask, zero-filled / TV / trained network, side-by-side results.

A magicgui :class:`~magicgui.widgets.Container` whose sub-widgets are attributes, so tests set
values and call the handlers without clicking. It is thin: it builds a
:class:`backend.config.ReconConfig` and calls :mod:`backend` (``volume_mask``,
``make_reconstructor``, ``reconstruct_volume``, ``backend.metrics``). napari is imported for
typing only at module level; torch and the backend are imported when the widget is built.

This module holds the widget's construction (sub-widgets, tooltips, connections); its
behaviour lives in mixins, one module per concern:

* :mod:`~napari_nascsmri._recon_source` (:class:`SourceMixin`): the source is an image layer
  opened by this plugin's reader (``metadata["nascsmri_source"]`` = file path); the widget
  reopens the file with :func:`backend.io.open_volume` for k-space;
* :mod:`~napari_nascsmri._recon_mask` (:class:`MaskMixin`): changing mask type / acceleration /
  centre fraction / seed redraws the mask (:func:`backend.recon.volume_mask`) and,
  synchronously, the zero-filled image of the *current slice only* (numpy FFT); other slices
  follow lazily when the slider reaches them; the mask layer is editable: select it and
  click/drag to toggle phase-encode columns;
* :mod:`~napari_nascsmri._recon_layers` (:class:`LayersMixin`): layer names, |error| maps, the
  grid arrangement and the metrics table;
* :mod:`~napari_nascsmri._recon_job` (:class:`JobMixin`): *Reconstruct* runs the chosen method
  in a napari ``thread_worker``: current slice first, then the whole volume through
  :func:`backend.recon.reconstruct_volume` (progress bar, *Cancel*). Set :data:`RUN_SYNC` (or
  ``widget.run_sync``) to run it in the calling thread (tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)

from ._layers import LinkedContrast
from ._mask_editor import MaskEditor
from ._recon_job import JobMixin
from ._recon_layers import LayersMixin
from ._recon_mask import MaskMixin
from ._recon_source import SourceMixin
from ._shared import FROM_FILE, SHIPPED, ZERO_FILLED

if TYPE_CHECKING:
    import napari


#: Run reconstruction jobs synchronously in the calling thread (tests); else a thread_worker.
RUN_SYNC = False
#: Keyboard shortcuts of the viewer while the widget is docked (F: flip, see the compare panel).
SHORTCUTS = {"4": "4x mask", "8": "8x mask", "m": "next method in compare / flicker",
             "e": "select the mask layer", "r": "reconstruct the current slice", "f": "flip (flicker view)"}


class ReconstructionWidget(SourceMixin, MaskMixin, LayersMixin, JobMixin, Container):
    """Reconstruct a volume opened by the plugin's reader and compare with its reference.

    Attributes used by tests and scripts (magicgui widgets): ``source``, ``mask_type``,
    ``acceleration``, ``preset_4x``, ``preset_8x``, ``auto_center``, ``center_fraction``,
    ``auto_seed``, ``seed``, ``show_kspace``, ``side_by_side``, ``realised``, ``reset_mask``,
    ``mask_path``, ``export_button``, ``method``, ``weights``, ``weights_file``, ``device``,
    ``run_button``, ``slice_button``, ``cancel_button``, ``progress``, ``status``,
    ``metrics_table``. State: ``volume``, ``editor`` (:class:`MaskEditor`), ``metrics``
    (method -> {"slices": [...], "volume": {...}}), ``last_result`` (VolumeResult), ``worker``.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        from backend.config import ACCELERATIONS, CLASSICAL_MODELS, network_model_names
        from backend.masks import default_center_fraction
        from backend.masks_2d import ALL_MASK_KINDS
        from backend.devices import resolve_device

        super().__init__(labels=True)
        self.viewer = viewer
        self.run_sync = RUN_SYNC
        self.volume = None
        self.reference: np.ndarray | None = None
        self.data_range: float | None = None
        self.editor = MaskEditor(on_change=self._on_mask_changed)
        self.metrics: dict[str, dict] = {}
        self.last_result = None
        self.worker = None
        self._source_layer = None
        self._layout: tuple = ()
        self._attempted = None  # the layer last passed to load_source (opened or not)
        self._kspace_cache: dict[int, np.ndarray] = {}
        self._coil_request = self._coil_worker = None  # the coil views on their way (_update_coil_layers)
        self._zf_fresh: set[int] = set()
        self._stale: set[str] = set()
        self._models: list[str] = []
        self._cancel_requested = False
        self._job_method: str | None = None
        self._job_config = None
        self._job_lines: np.ndarray | None = None
        self._file_mask: np.ndarray | None = None
        self._window: tuple[float, float] | None = None
        self._batch_depth = 0
        self._progress_time = 0.0
        self._arrange_pending = False
        self._error_window: tuple[float, float] | None = None
        self._quiet = False
        self._contrast = LinkedContrast()
        self._error_contrast = LinkedContrast()
        self._networks = network_model_names()
        self._default_cf = default_center_fraction

        # -- source and mask ------------------------------------------------------------------
        self.source = ComboBox(label="source", choices=self._source_choices,
                               tooltip="an image layer opened by napari-nascsmri's reader")
        self.mask_type = ComboBox(label="mask", choices=ALL_MASK_KINDS, value="random")
        self.acceleration = SpinBox(label="acceleration", min=2, max=64, value=ACCELERATIONS[0],
                                    tooltip="nominal acceleration (any integer >= 2)")
        self.preset_4x = PushButton(text=f"{ACCELERATIONS[0]}x")
        self.preset_8x = PushButton(text=f"{ACCELERATIONS[1]}x")
        presets = Container(layout="horizontal", widgets=[self.preset_4x, self.preset_8x],
                            label="presets", labels=False)
        presets.margins = (0, 0, 0, 0)
        self.auto_center = CheckBox(text="default (0.32 / acceleration)", value=True, label="")
        self.center_fraction = FloatSpinBox(label="centre fraction", min=0.0, max=1.0, step=0.005,
                                            value=round(default_center_fraction(4), 4), enabled=False)
        self.auto_seed = CheckBox(text="per-volume seed (fastMRI, from the file name)", value=True,
                                  label="")
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0, enabled=False,
                            tooltip="the mask's random seed (untick the per-volume seed to choose one)")
        self.seed_used = Label(label="seed used", value="-")
        self.seed_used.tooltip = "the seed the mask on display was drawn with"
        self.realised = Label(label="realised", value="-")
        self.brush = SpinBox(label="brush", min=0, max=32, value=MaskEditor.BRUSH, visible=False,
                             tooltip="2-D patterns: radius in pixels of the disc a click or drag on "
                                     "the mask sets (0: one point)")
        self.show_kspace = CheckBox(text="show log-magnitude k-space", value=False, label="")
        self.show_coils = CheckBox(text="show coil images and maps", value=False, label="", visible=False)
        self.side_by_side = CheckBox(text="side by side (grid mode)", value=True, label="")
        self.reset_mask = PushButton(text="Reset edits", label="",
                                     tooltip="redraw the mask from the settings above")
        self.undo_button = PushButton(text="Undo", enabled=False,
                                      tooltip="undo the last mask edit (a click, a drag, or a settings "
                                              "change that discarded hand edits)")
        self.redo_button = PushButton(text="Redo", enabled=False, tooltip="redo the mask edit undone last")
        edits = Container(layout="horizontal", labels=False, label="mask edits",
                          widgets=[self.reset_mask, self.undo_button, self.redo_button])
        edits.margins = (0, 0, 0, 0)
        self.mask_path = FileEdit(label="mask file", mode="w", filter="*.npy *.json",
                                  tooltip="where Export writes the mask (.npy or .json), for "
                                          "'nascsmri reconstruct --mask-file'")
        self.export_button = PushButton(text="Export mask", label="")

        # -- method ---------------------------------------------------------------------------
        self.method = ComboBox(label="method", choices=list(CLASSICAL_MODELS) + list(self._networks),
                               value=ZERO_FILLED)
        self.weights = ComboBox(label="weights", choices=[SHIPPED, FROM_FILE], value=SHIPPED)
        self.weights_file = FileEdit(label="weights file", mode="r",
                                     filter="*.safetensors *.pt *.pth")
        device = resolve_device("auto")
        self.device = Label(label="device", value=(
            f"cuda ({_cuda_name()})" if device.type == "cuda" else "cpu (no CUDA device)"))
        self.run_button = PushButton(text="Reconstruct volume")
        self.slice_button = PushButton(text="Current slice")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        buttons = Container(layout="horizontal", labels=False, label="",
                            widgets=[self.run_button, self.slice_button, self.cancel_button])
        buttons.margins = (0, 0, 0, 0)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="choose a source layer")
        self.metrics_table = Label(label="metrics", value="-")
        self._table_rows: dict[str, dict[str, str]] = {}
        _tooltips({
            self.mask_type: "undersampling pattern: phase-encode columns (random, equispaced: fastMRI's; gaussian) or a 2-D pattern of both phase-encode axes (gaussian2d, poisson: painted with the brush)",
            self.preset_4x: f"{ACCELERATIONS[0]}x with the default centre fraction",
            self.preset_8x: f"{ACCELERATIONS[1]}x with the default centre fraction",
            self.auto_center: "centre fraction 0.32 / acceleration (fastMRI's 0.08 at 4x, 0.04 at 8x)",
            self.center_fraction: "fraction of the central k-space columns always sampled",
            self.auto_seed: "seed the mask with the file name's code points, as fastMRI does per volume",
            self.realised: "W / sampled columns: the acceleration the mask really has",
            self.show_kspace: "add a log-magnitude view of the sampled k-space of the current slice",
            self.show_coils: "multi-coil files: the current slice's coil images and the sensitivity maps "
                             "estimated from the mask's centre, each as a mosaic",
            self.side_by_side: "grid mode: reference, reconstructions and |error| maps side by side",
            self.export_button: "write the mask on display (with hand edits) to the mask file",
            self.method: "zero-filled, total variation (TV) or a trained network",
            self.weights: "the weights shipped with the package, or a file of your own",
            self.weights_file: "network weights (.safetensors from 'nascsmri train', or .pt)",
            self.device: "where networks run (CUDA when torch sees a GPU)",
            self.run_button: "the current slice first, then every slice in the background",
            self.slice_button: "reconstruct the current slice only",
            self.cancel_button: "stop the running reconstruction after its current slice",
            self.progress: "slices reconstructed",
            self.status: "what the widget is doing; keys: "
                         + ", ".join(f"{k.upper()} {v}" for k, v in SHORTCUTS.items()),
            self.metrics_table: "PSNR / SSIM / NMSE against the reference (backend.metrics, "
                                "volume data range), the current slice and the whole volume",
        })

        self.extend([
            self.source, self.mask_type, self.acceleration, presets, self.auto_center,
            self.center_fraction, self.auto_seed, self.seed, self.seed_used, self.realised, self.brush,
            self.show_kspace, self.show_coils,
            self.side_by_side, edits, self.mask_path, self.export_button, self.method,
            self.weights, self.weights_file, self.device, buttons, self.progress, self.status,
            self.metrics_table,
        ])
        from ._compare import ComparePanel

        self.compare = ComparePanel(self)
        self.compare.label = ""
        self.append(self.compare)

        # -- connections ----------------------------------------------------------------------
        self.source.changed.connect(self._on_source_changed)
        for w in (self.mask_type, self.center_fraction, self.seed, self.auto_seed):
            w.changed.connect(self._on_settings_changed)
        self.acceleration.changed.connect(self._on_acceleration_changed)
        self.auto_center.changed.connect(self._on_acceleration_changed)
        self.preset_4x.changed.connect(lambda: setattr(self.acceleration, "value", ACCELERATIONS[0]))
        self.preset_8x.changed.connect(lambda: setattr(self.acceleration, "value", ACCELERATIONS[1]))
        self.auto_seed.changed.connect(self._on_auto_seed)
        self.show_kspace.changed.connect(self._update_kspace_layer)
        self.show_coils.changed.connect(self._update_coil_layers)
        self.side_by_side.changed.connect(self._arrange)
        self.reset_mask.changed.connect(lambda *_: self.update_mask(warn=False))
        self.undo_button.changed.connect(self.undo_mask)
        self.redo_button.changed.connect(self.redo_mask)
        self.brush.changed.connect(lambda radius: setattr(self.editor, "brush", int(radius)))
        self.export_button.changed.connect(self._on_export_clicked)
        self.method.changed.connect(self._update_weight_widgets)
        self.weights.changed.connect(self._update_weight_widgets)
        self.run_button.changed.connect(lambda: self.reconstruct(whole_volume=True))
        self.slice_button.changed.connect(lambda: self.reconstruct(whole_volume=False))
        self.cancel_button.changed.connect(self.cancel)
        self.viewer.dims.events.current_step.connect(self._on_slice_changed)
        self.viewer.mouse_drag_callbacks.append(self._viewer_drag)
        self.viewer.layers.events.inserted.connect(self._refresh_sources)
        self.viewer.layers.events.removed.connect(self._refresh_sources)
        self.viewer.canvas.events.size.connect(self._on_canvas_resized)
        self.native.destroyed.connect(lambda *_: self._disconnect())

        self._update_weight_widgets()
        self._refresh_sources()
        self._bind_keys()

    def _bind_keys(self) -> None:
        """The viewer's keyboard shortcuts of :data:`SHORTCUTS` (a convenience: a key another
        plugin or layer binds first keeps its own meaning there)."""
        from backend.config import ACCELERATIONS

        actions = {
            "4": lambda: setattr(self.acceleration, "value", ACCELERATIONS[0]),
            "8": lambda: setattr(self.acceleration, "value", ACCELERATIONS[1]),
            "m": self.compare.next_method,
            "e": self.select_mask_layer,
            "r": lambda: self.reconstruct(whole_volume=False),
        }
        for key, action in actions.items():
            try:
                self.viewer.bind_key(key, lambda viewer, action=action: action(), overwrite=True)
            except Exception:  # noqa: BLE001 - a key binding is a convenience
                pass

    def select_mask_layer(self) -> None:
        """Make the mask layer the active one (edits work with any active layer; this shows it)."""
        layer = next((layer for layer in self.viewer.layers if layer.name == self._name("mask")), None)
        if layer is not None:
            self.viewer.layers.selection.active = layer


def _tooltips(texts: dict) -> None:
    for widget, text in texts.items():
        if not widget.tooltip:
            widget.tooltip = text


def _cuda_name() -> str:
    import torch

    try:
        return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - informational only
        return "CUDA"
