"""The reconstruction widget: mask, zero-filled / TV / trained network, side-by-side results.

A magicgui :class:`~magicgui.widgets.Container` whose sub-widgets are attributes, so tests set
values and call the handlers without clicking. It is thin: it builds a
:class:`backend.config.ReconConfig` and calls :mod:`backend` (``volume_mask``,
``make_reconstructor``, ``reconstruct_volume``, ``backend.metrics``). napari is imported for
typing only at module level; torch and the backend are imported when the widget is built.

Flow:

* the source is an image layer opened by this plugin's reader (``metadata["nascsmri_source"]``
  = file path); the widget reopens the file with :func:`backend.io.open_volume` for k-space;
* changing mask type / acceleration / centre fraction / seed redraws the mask
  (:func:`backend.recon.volume_mask`) and, synchronously, the zero-filled image of the
  *current slice only* (numpy FFT); other slices follow lazily when the slider reaches them;
* the mask layer is editable: select it and click/drag to toggle phase-encode columns;
* *Reconstruct* runs the chosen method in a napari ``thread_worker``: current slice first, then
  the whole volume through :func:`backend.recon.reconstruct_volume` (progress bar, *Cancel*).
  Set :data:`RUN_SYNC` (or ``widget.run_sync``) to run it in the calling thread (tests).
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, NamedTuple

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

from ._layers import LinkedContrast, arrange, find_layer, set_slice, show_colorbar, show_name, upsert_image
from ._mask_editor import MaskEditor, mask_under_cursor

if TYPE_CHECKING:
    import napari

#: Run reconstruction jobs synchronously in the calling thread (tests); else a thread_worker.
RUN_SYNC = False

SOURCE_KEY = "nascsmri_source"
METRIC_KEYS = ("psnr", "ssim", "nmse")
METRIC_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "nmse": "{:.5f}"}
TABLE_COLUMNS = ("slice PSNR", "slice SSIM", "slice NMSE", "volume PSNR", "volume SSIM", "volume NMSE")
ERROR_COLORMAP = "inferno"
#: |error| maps are in percent of the reference maximum (``backend.viewer.error_percent``).
ERROR_UNITS = "% of reference max"
NO_REFERENCE = ("no reference in this file (fastMRI test layout: undersampled k-space only): "
                "PSNR / SSIM / NMSE need a fully sampled reference")
SHIPPED, FROM_FILE = "shipped", "file"
#: Seconds between two progress-bar repaints while a job runs.
PROGRESS_S = 1.0
ZERO_FILLED = "zero-filled"


class SlicePreview(NamedTuple):
    """Yielded by :func:`reconstruction_job` once the current slice is reconstructed."""

    index: int
    image: np.ndarray  # float32 (h, w) magnitude on the output grid
    metrics: dict | None


class JobResult(NamedTuple):
    """Returned by :func:`reconstruction_job` for a whole volume."""

    result: Any  # backend.recon.VolumeResult
    slice_metrics: dict | None  # method -> one {"psnr", "ssim", "nmse"} per slice (volume range)
    data_range: float | None
    errors: dict | None = None  # method -> |error| volume in % of the reference max


def slice_metrics(reference: np.ndarray, image: np.ndarray, data_range: float) -> dict[str, float]:
    """PSNR/SSIM/NMSE of one slice, with the *volume* data range (:func:`backend.viewer.slice_metrics`)."""
    from backend.viewer import slice_metrics as metrics

    return metrics(reference, image, data_range)


def reconstruction_job(path, config, lines, index, whole, reference, data_range):
    """Worker generator: current slice first (:class:`SlicePreview`), then the whole volume.

    Yields :class:`backend.recon.Progress` events and one :class:`SlicePreview`; returns a
    :class:`JobResult` (``whole``) or None (current slice only). ``lines`` is the bool ``(W,)``
    mask shown in the widget; for the whole volume ``config`` reproduces it (drawn mask, or
    ``config.mask_file`` for an edited one).
    """
    from backend.io import open_volume
    from backend.recon import make_reconstructor, reconstruct_volume
    from backend.progress import Progress
    from backend.transforms import center_crop
    from backend.viewer import error_percent, per_slice_metrics

    yield Progress(0, 1, f"{config.model}: loading")
    recon = make_reconstructor(config)
    volume = open_volume(path, crop=config.crop)
    try:
        sl = volume[index]
        out = recon(sl.kspace[None], np.asarray(lines, dtype=np.float32))[0]
        image = np.abs(center_crop(out, volume.info.output_shape)).astype(np.float32)
        metrics = None
        if reference is not None and data_range:
            metrics = slice_metrics(reference[index], image, data_range)
        yield SlicePreview(index, image, metrics)
        if not whole:
            return None
        result = yield from reconstruct_volume(volume, config, recon)
    finally:
        volume.close()
    per_slice = errors = None
    if result.reference is not None and data_range:
        yield Progress(len(result.reference), len(result.reference), f"{config.model}: metrics")
        outputs = ((config.model, result.reconstruction), (ZERO_FILLED, result.zero_filled))
        per_slice = {name: per_slice_metrics(result.reference, images, data_range) for name, images in outputs}
        errors = {name: error_percent(images, result.reference, data_range) for name, images in outputs}
    return JobResult(result, per_slice, data_range, errors)


def _notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    {"error": notifications.show_error, "warning": notifications.show_warning}.get(
        kind, notifications.show_info
    )(message)


class ReconstructionWidget(Container):
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
        from backend.masks import MASK_FUNCS, default_center_fraction
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
        self._zf_fresh: set[int] = set()
        self._stale: set[str] = set()
        self._models: list[str] = []
        self._cancel_requested = False
        self._job_method: str | None = None
        self._temp_mask: str | None = None
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
        self.mask_type = ComboBox(label="mask", choices=list(MASK_FUNCS), value="random")
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
        self.show_kspace = CheckBox(text="show log-magnitude k-space", value=False, label="")
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
            self.mask_type: "undersampling pattern of the phase-encode columns (fastMRI's masks)",
            self.preset_4x: f"{ACCELERATIONS[0]}x with the default centre fraction",
            self.preset_8x: f"{ACCELERATIONS[1]}x with the default centre fraction",
            self.auto_center: "centre fraction 0.32 / acceleration (fastMRI's 0.08 at 4x, 0.04 at 8x)",
            self.center_fraction: "fraction of the central k-space columns always sampled",
            self.auto_seed: "seed the mask with the file name's code points, as fastMRI does per volume",
            self.realised: "W / sampled columns: the acceleration the mask really has",
            self.show_kspace: "add a log-magnitude view of the sampled k-space of the current slice",
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
            self.status: "what the widget is doing",
            self.metrics_table: "PSNR / SSIM / NMSE against the reference (backend.metrics, "
                                "volume data range), the current slice and the whole volume",
        })

        self.extend([
            self.source, self.mask_type, self.acceleration, presets, self.auto_center,
            self.center_fraction, self.auto_seed, self.seed, self.seed_used, self.realised, self.show_kspace,
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
        self.side_by_side.changed.connect(self._arrange)
        self.reset_mask.changed.connect(lambda *_: self.update_mask(warn=False))
        self.undo_button.changed.connect(self.undo_mask)
        self.redo_button.changed.connect(self.redo_mask)
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
        self.native.destroyed.connect(lambda *_: self._disconnect())

        self._update_weight_widgets()
        self._refresh_sources()

    # ===================================================================== source =============
    def _source_choices(self, widget=None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self.viewer.layers
                if SOURCE_KEY in getattr(layer, "metadata", {})]

    def _refresh_sources(self, event=None) -> None:
        self.source.reset_choices()  # keeps the value while it is a choice, else picks the first
        value = self.source.value
        if (value is None) != (self._attempted is None) or (value is not None and value != self._attempted):
            self.load_source(value)

    def _on_source_changed(self, layer) -> None:
        self.load_source(layer)

    def load_source(self, layer) -> bool:
        """Open the file behind ``layer`` (its ``nascsmri_source``); errors become notifications."""
        from backend.errors import InputError
        from backend.io import open_volume

        self._attempted = layer  # first: removing layers below re-enters _refresh_sources
        self._remove_own_layers()
        if self._source_layer is not None and self._source_layer in self.viewer.layers:
            self._source_layer.visible = True  # hidden while it duplicated the zero-filled view
        self._source_layer = None
        self._close_volume()
        if layer is None:
            self.status.value = "choose a source layer"
            return False
        path = layer.metadata.get(SOURCE_KEY)
        try:
            volume = open_volume(path)
            first = volume[0]  # read one slice now: a broken file fails here, not later
        except Exception as err:  # noqa: BLE001 - any broken input becomes a notification
            if "volume" in locals():
                volume.close()
            text = str(err) if isinstance(err, InputError) else f"{path}: {type(err).__name__}: {err}"
            _notify("error", f"napari-nascsmri: {text}")
            self.status.value = f"cannot open {os.path.basename(str(path))}"
            return False
        self.volume, self._source_layer = volume, layer
        self._kspace_cache = {0: first.kspace}
        self._file_mask = first.file_mask
        info = volume.info
        self.reference, self.data_range = self._reference_volume(layer, volume)
        test_file = first.file_mask is not None
        for w in (self.mask_type, self.acceleration, self.auto_center, self.auto_seed,
                  self.preset_4x, self.preset_8x, self.reset_mask):
            w.enabled = not test_file
        self.center_fraction.enabled = not test_file and not self.auto_center.value
        self.seed.enabled = not test_file and not self.auto_seed.value
        self.metrics, self._models, self._stale = {}, [], set()
        self._contrast.clear()
        self._error_contrast.clear()
        self._window = self._source_window(layer)
        self._error_window = None
        if self.reference is None:
            layer.visible = False  # the reader's image is the zero-filled view of the file mask
        for notice in info.notices:
            _notify("info", f"napari-nascsmri: {notice}")
        self.status.value = f"{os.path.basename(info.path)}: {len(volume)} slices, {info.kind}"
        self.editor.forget()  # a new volume: no edits, no undo across volumes
        self.update_mask(warn=False)
        return True

    def _reference_volume(self, layer, volume) -> tuple[np.ndarray | None, float | None]:
        """The reference magnitudes (the reader's layer data) and the volume data range."""
        info = volume.info
        if not info.has_reference:
            return None, None
        ref = np.asarray(layer.data, dtype=np.float32)
        if ref.shape != (len(volume),) + tuple(info.output_shape):
            ref = np.stack([volume[i].reference for i in range(len(volume))]).astype(np.float32)
        peak = float(ref.max())
        return ref, (peak if peak > 0 else None)

    def _source_window(self, layer) -> tuple[float, float]:
        """Percentile display window (:func:`backend.viewer.display_window`) of the source,
        applied to the source layer; reconstructions share it (linked contrast)."""
        from backend.viewer import display_window

        data = self.reference if self.reference is not None else np.asarray(layer.data)
        window = display_window(data, floor_zero=True)
        layer.contrast_limits_range = (min(0.0, float(np.min(data))), max(float(np.max(data)), window[1]))
        layer.contrast_limits = list(window)
        return window

    def _remove_own_layers(self) -> None:
        """Remove the layers this widget made for the volume loaded so far (a source switch)."""
        if self.volume is None:
            return
        suffix = self._name("")[1:]  # " [stem]" -> "[stem]"
        for layer in list(self.viewer.layers):
            if "nascsmri_role" in layer.metadata and SOURCE_KEY not in layer.metadata \
                    and layer.name.endswith(suffix):
                self.viewer.layers.remove(layer)
        self._layout = ()

    def _close_volume(self) -> None:
        if self.volume is not None:
            self.volume.close()
        self.volume = None
        self._kspace_cache = {}

    def _disconnect(self) -> None:
        try:
            self._disconnect_all()
        except (AttributeError, RuntimeError):  # during garbage collection: parts already gone
            pass

    def _disconnect_all(self) -> None:
        if self.worker is not None:
            self.worker.quit()
        for emitter, cb in ((self.viewer.dims.events.current_step, self._on_slice_changed),
                            (self.viewer.layers.events.inserted, self._refresh_sources),
                            (self.viewer.layers.events.removed, self._refresh_sources)):
            try:
                emitter.disconnect(cb)
            except Exception:  # viewer already gone
                pass
        try:
            self.viewer.mouse_drag_callbacks.remove(self._viewer_drag)
        except (ValueError, AttributeError, RuntimeError):
            pass
        self._close_volume()

    # ===================================================================== mask ===============
    @property
    def current_slice(self) -> int:
        n = len(self.volume) if self.volume is not None else 1
        step = self.viewer.dims.current_step  # volumes are 3-D: slices on the third-last axis
        return int(min(max(step[-3] if len(step) >= 3 else 0, 0), n - 1))

    def kspace(self, index: int) -> np.ndarray:
        """Centred complex k-space ``(H, W)`` of slice ``index`` (cached)."""
        if index not in self._kspace_cache:
            self._kspace_cache[index] = self.volume[index].kspace
        return self._kspace_cache[index]

    def config(self):
        """The :class:`backend.config.ReconConfig` described by the widget."""
        from backend.config import ReconConfig

        model = self.method.value
        weights = None
        if model in self._networks and self.weights.value == FROM_FILE:
            weights = os.fspath(self.weights_file.value)
        return ReconConfig(
            model=model,
            weights=weights,
            mask=self.mask_type.value,
            acceleration=int(self.acceleration.value),
            center_fraction=None if self.auto_center.value else float(self.center_fraction.value),
            seed=None if self.auto_seed.value else int(self.seed.value),
            batch_size=1,  # one slice per step: fine progress and a quick Cancel
        )

    def _on_acceleration_changed(self, *_) -> None:
        if self.auto_center.value:
            self._quiet = True
            self.center_fraction.value = round(self._default_cf(self.acceleration.value), 4)
            self._quiet = False
        self.center_fraction.enabled = not self.auto_center.value and self.auto_center.enabled
        self.update_mask()

    def _on_settings_changed(self, *_) -> None:
        if not self._quiet:
            self.update_mask()

    def update_mask(self, *_, warn: bool = True) -> None:
        """Redraw the mask from the settings and refresh the zero-filled view.

        Hand edits are dropped (``warn``: with a warning notification); Undo restores them.
        """
        from backend.recon import volume_mask

        if self.volume is None:
            return
        file_mask = self._file_mask
        try:
            mask, seed = volume_mask(self.volume.info, self.config(), file_mask)
        except ValueError as err:  # e.g. a centre fraction too large for the acceleration
            _notify("warning", f"napari-nascsmri: {err}")
            return
        self._show_seed(seed)
        if self.editor.reset(mask.lines, editable=file_mask is None) and warn:
            _notify("warning", "napari-nascsmri: the hand edits of the mask were replaced by the new "
                               "settings; Undo (in the widget) brings them back")
        self._on_mask_changed()

    def _on_auto_seed(self, auto: bool) -> None:
        self.seed.enabled = not auto and self.auto_seed.enabled
        self._on_settings_changed()

    def _show_seed(self, seed) -> None:
        """The seed actually used: a number, fastMRI's per-volume seed, or the file's mask."""
        if self._file_mask is not None:
            text = "none: the file's own mask (test layout)"
        elif seed is None:
            text = "none: mask from a file"
        elif isinstance(seed, (tuple, list)):
            name = os.path.basename(self.volume.info.path)
            text = f"per-volume: code points of {name!r} ({len(seed)} numbers, as fastMRI)"
        else:
            text = str(int(seed))
        self.seed_used.value = text
        # the number box only while a number is in use (it showed a stale value before)
        self.seed.visible = not self.auto_seed.value and self._file_mask is None

    def toggle_line(self, column: int) -> bool:
        """Toggle one phase-encode column of the mask (what a click on the mask layer does)."""
        return self.editor.toggle(column)

    def _on_mask_changed(self) -> None:
        self.undo_button.enabled = self.editor.can_undo
        self.redo_button.enabled = self.editor.can_redo
        lines = self.editor.lines
        n, W = int(lines.sum()), lines.size
        self.realised.value = f"{W / n:.2f}x ({n}/{W} lines)" + (" - edited" if self.editor.edited else "")
        self._zf_fresh = set()
        if ZERO_FILLED in self.metrics:
            self.metrics[ZERO_FILLED]["volume"] = None
        self._stale = set(self._models)
        self._update_mask_layer()
        self.update_zero_filled()
        self._update_kspace_layer()
        if self._stale:
            self.status.value = "mask changed: press Reconstruct to update " + ", ".join(sorted(self._stale))

    def _update_mask_layer(self) -> None:
        H = self.volume.info.grid[0]
        existing = find_layer(self.viewer, self._name("mask"))
        layer = upsert_image(self.viewer, self._name("mask"), self.editor.as_image(H),
                             contrast_limits=(0, 1), metadata={"nascsmri_role": "mask"})
        layer.metadata["nascsmri_mask_lines"] = self.editor.lines.astype(np.uint8).tolist()
        if existing is None:
            layer.mouse_pan = False  # dragging on the mask edits it instead of panning
            self._arrange()

    def _viewer_drag(self, viewer, event):
        """Viewer-level mouse drag: edits the mask when the cursor is over the mask layer,
        whichever layer is active (the camera does not pan during the edit)."""
        layer = find_layer(viewer, self._name("mask")) if self.volume is not None else None
        if layer is None or not mask_under_cursor(viewer, layer, event):
            return
        camera = getattr(getattr(viewer, "scene", None), "camera", None) or viewer.camera
        panning = camera.mouse_pan
        camera.mouse_pan = False
        try:
            yield from self.editor.drag_callback(layer, event)
        finally:
            active = viewer.layers.selection.active
            camera.mouse_pan = panning if active is None or active is not layer else False

    def undo_mask(self, *_) -> bool:
        """Undo the last mask edit (Undo button)."""
        return self.editor.undo()

    def redo_mask(self, *_) -> bool:
        return self.editor.redo()

    def _update_kspace_layer(self, *_) -> None:
        name = self._name("k-space")
        if not self.show_kspace.value or self.volume is None:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            return
        from backend.viewer import display_window, log_kspace

        image = log_kspace(self.kspace(self.current_slice), self.editor.lines)
        existing = find_layer(self.viewer, name)
        upsert_image(self.viewer, name, image, colormap="viridis",
                     contrast_limits=display_window(image[:, self.editor.lines], (1.0, 99.9)),
                     metadata={"nascsmri_role": "kspace", "nascsmri_slice": self.current_slice})
        if existing is None:
            self._arrange()

    # ===================================================================== zero-filled ========
    def zero_filled_slice(self, index: int) -> np.ndarray:
        """``|ifft2c(kspace * mask)|`` of one slice, centre-cropped to the output grid."""
        from backend.viewer import preview_slice

        return preview_slice(self.kspace(index), self.editor.lines, self.volume.info.output_shape)

    def update_zero_filled(self, index: int | None = None) -> None:
        """Recompute the zero-filled view of slice ``index`` (default: the current one) now."""
        if self.volume is None or self.editor.lines is None:
            return
        index = self.current_slice if index is None else index
        name = self._name(ZERO_FILLED)
        layer = find_layer(self.viewer, name)
        shape = (len(self.volume),) + tuple(self.volume.info.output_shape)
        image = self.zero_filled_slice(index)
        if layer is None or tuple(layer.data.shape) != shape:
            data = np.zeros(shape, dtype=np.float32)
            data[index] = image
            layer = upsert_image(self.viewer, name, data, contrast_limits=self._display_limits(),
                                 metadata={"nascsmri_role": "reconstruction", "nascsmri_method": ZERO_FILLED})
            self._arrange()
        else:
            set_slice(layer, index, image)
        self._zf_fresh.add(index)
        layer.metadata["nascsmri_mask_lines"] = self.editor.lines.astype(np.uint8).tolist()
        if self.reference is not None:
            self._set_error_slice(ZERO_FILLED, index, image)
            entry = self.metrics.setdefault(ZERO_FILLED, {"slices": None, "volume": None})
            if entry["slices"] is None:
                entry["slices"] = [None] * len(self.volume)
            if self.data_range:
                entry["slices"][index] = slice_metrics(self.reference[index], image, self.data_range)
            layer.metadata["nascsmri_metrics"] = {"slices": entry["slices"], "volume": entry["volume"],
                                                  "data_range": self.data_range}
        self._render_table()

    def _on_slice_changed(self, event=None) -> None:
        # nothing to follow while layers go away (a removed source, the viewer closing)
        if self.volume is None or self._source_layer not in self.viewer.layers \
                or self._name(ZERO_FILLED) not in self.viewer.layers:
            return
        i = self.current_slice
        if i not in self._zf_fresh:
            self.update_zero_filled(i)
        if self.show_kspace.value:
            self._update_kspace_layer()
        self._render_table()

    # ===================================================================== layers =============
    def _name(self, role: str) -> str:
        stem = os.path.basename(self.volume.info.path) if self.volume is not None else "volume"
        for suffix in (".nii.gz", ".nii", ".h5", ".npy"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        return f"{role} [{stem}]"

    def _display_limits(self) -> tuple[float, float]:
        if self._source_layer is not None and self._source_layer in self.viewer.layers:
            lo, hi = self._source_layer.contrast_limits
            return float(lo), float(hi)
        return getattr(self, "_window", None) or (0.0, float(self.data_range or 1.0))

    def _set_error_slice(self, method: str, index: int, image: np.ndarray) -> None:
        name = self._name(f"|error| {method}")
        from backend.viewer import display_window, error_percent

        layer = find_layer(self.viewer, name)
        err = error_percent(image, self.reference[index], self.data_range)
        if self._error_window is None:  # from the first zero-filled error slice, then shared
            self._error_window = display_window(err, floor_zero=True)
        if layer is None or tuple(layer.data.shape) != self.reference.shape:
            data = np.zeros(self.reference.shape, dtype=np.float32)
            data[index] = err
            self._add_error_layer(method, data)
        else:
            set_slice(layer, index, err)

    def _add_error_layer(self, method: str, data: np.ndarray):
        new = self._name(f"|error| {method}") not in self.viewer.layers
        layer = upsert_image(self.viewer, self._name(f"|error| {method}"), data,
                             colormap=ERROR_COLORMAP, contrast_limits=self._error_window or (0.0, 25.0),
                             metadata={"nascsmri_role": "error", "nascsmri_method": method,
                                       "nascsmri_units": ERROR_UNITS})
        if new:  # setting the colourbar again rebuilds its visual (shader programs: slow)
            show_colorbar(layer)
            self._arrange()
        return layer

    @contextmanager
    def _batch(self):
        """Defer :meth:`_arrange` to the end of a batch of layer changes (one re-layout)."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0 and self._arrange_pending:
                self._arrange()

    def _arrange(self, *_) -> None:
        """Order and grid: [reference, zero-filled, models] / [mask, |error| ...] / [k-space]."""
        if self._batch_depth:
            self._arrange_pending = True
            return
        self._arrange_pending = False
        if self.volume is None:
            return
        methods = [ZERO_FILLED] + self._models
        source = self._source_layer
        has_ref = self.reference is not None
        ref = [source.name] if has_ref and source is not None and source in self.viewer.layers else []
        errors = [self._name(f"|error| {m}") for m in methods] if has_ref else []
        images = ref + [self._name(m) for m in methods]
        if has_ref:
            rows = [images, [self._name("mask")] + errors, [self._name("k-space")]]
        else:  # no reference, no error maps: the mask joins the images' row
            rows = [[self._name("mask")] + images, [self._name("k-space")]]
        arrange(self.viewer, rows, self.side_by_side.value)
        if ref:
            show_name(self._source_layer)
        layout = (tuple(n for row in rows for n in row if n in self.viewer.layers), self.side_by_side.value)
        if layout != self._layout:
            self._layout = layout
            self.viewer.reset_view()
        self._contrast.set_layers([find_layer(self.viewer, n) for n in images])
        self._error_contrast.set_layers([find_layer(self.viewer, n) for n in errors])
        compare = getattr(self, "compare", None)
        if compare is not None:
            compare.apply()

    # ===================================================================== metrics ============
    def _render_table(self) -> None:
        """Per-slice (current slice) and per-volume metrics of every method, as a small table."""
        i = self.current_slice
        rows: dict[str, dict[str, str]] = {}
        for method in [ZERO_FILLED] + self._models:
            entry = self.metrics.get(method)
            if entry is None:
                continue
            per_slice = entry["slices"][i] if entry["slices"] and i < len(entry["slices"]) else None
            texts = [_fmt(k, per_slice) for k in METRIC_KEYS] + [_fmt(k, entry["volume"]) for k in METRIC_KEYS]
            rows[method + (" (old mask)" if method in self._stale else "")] = dict(zip(TABLE_COLUMNS, texts))
        self._table_rows = rows
        if self.volume is not None and self.reference is None:
            self.metrics_table.value = NO_REFERENCE
        else:
            self.metrics_table.value = _metrics_html(rows, i) if rows else "-"

    def displayed_metrics(self) -> dict[str, dict[str, str]]:
        """The metrics as shown: {method: {"slice PSNR": text, ..., "volume NMSE": text}}."""
        return {name: dict(row) for name, row in self._table_rows.items()}

    # ===================================================================== weights ============
    def _update_weight_widgets(self, *_) -> None:
        from backend.models import shipped_weights

        model = self.method.value
        is_net = model in self._networks
        shipped_ok = is_net and shipped_weights(model).exists()
        item = self.weights.native.model().item(0)
        if item is not None:
            item.setEnabled(shipped_ok or not is_net)
            item.setToolTip("" if shipped_ok else f"no weights ship for {model!r} yet: choose a "
                            "weights file (see 'nascsmri train')")
        if is_net and not shipped_ok and self.weights.value == SHIPPED:
            self.weights.value = FROM_FILE
        self.weights.enabled = is_net
        self.weights_file.enabled = is_net and self.weights.value == FROM_FILE

    # ===================================================================== jobs ===============
    @property
    def running(self) -> bool:
        return self._job_method is not None

    def reconstruct(self, whole_volume: bool = True):
        """Run the selected method: current slice first, then (``whole_volume``) every slice.

        Returns the worker (None when run synchronously or refused).
        """
        from backend.errors import InputError

        if self.volume is None:
            _notify("warning", "napari-nascsmri: choose a source layer first")
            return None
        if self.running:
            _notify("warning", "napari-nascsmri: a reconstruction is already running")
            return None
        config = self.config()
        if config.model in self._networks and self.weights.value == FROM_FILE and not (
            self.weights_file.value and os.path.isfile(os.fspath(self.weights_file.value))
        ):
            _notify("error", f"napari-nascsmri: {InputError(self.weights_file.value, 'choose a weights file')}")
            return None
        if self.editor.edited:
            fd, self._temp_mask = tempfile.mkstemp(prefix="nascsmri-mask-", suffix=".npy")
            with os.fdopen(fd, "wb") as f:
                np.save(f, self.editor.lines.astype(np.uint8))
            config.mask_file = self._temp_mask
        self._job_method = config.model
        self._job_config = config
        self._job_lines = self.editor.lines.copy()
        kwargs = dict(path=self.volume.info.path, config=config, lines=self._job_lines,
                      index=self.current_slice, whole=whole_volume, reference=self.reference,
                      data_range=self.data_range)
        self._on_started()
        if self.run_sync:
            self._run_here(reconstruction_job(**kwargs))
            return None
        from napari.qt.threading import create_worker

        worker = create_worker(reconstruction_job, _start_thread=False, _ignore_errors=True, **kwargs)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        return worker

    def _run_here(self, gen) -> None:
        """Synchronous driver with the worker's semantics (yielded/returned/errored/aborted)."""
        try:
            while True:
                if self._cancel_requested:
                    gen.close()
                    self._on_aborted()
                    break
                try:
                    event = next(gen)
                except StopIteration as stop:
                    self._on_returned(stop.value)
                    break
                self._on_yielded(event)
        except Exception as err:  # noqa: BLE001 - shown to the user like the worker's errored
            self._on_errored(err)
        finally:
            self._on_finished()

    def cancel(self, *_) -> None:
        """Stop the running job after its current slice; results so far are discarded."""
        if not self.running:
            return
        self._cancel_requested = True
        if self.worker is not None:
            self.worker.quit()
        self.status.value = "cancelling..."

    def _on_started(self) -> None:
        self._cancel_requested = False
        self.run_button.enabled = self.slice_button.enabled = self.source.enabled = False
        self.cancel_button.enabled = True
        self.progress.max, self.progress.value = 1, 0
        self.status.value = f"{self._job_method}: running"

    def _on_yielded(self, event) -> None:
        if isinstance(event, SlicePreview):
            self._show_preview(event)
            return
        total = max(int(event.total), 1)
        done = min(int(event.done), total)
        now = time.perf_counter()
        # QProgressBar repaints at once, and with it napari's GL canvas when that has a pending
        # redraw (0.1-0.5 s with software OpenGL): at most a few progress repaints a second
        if done in (0, total) or self.progress.max != total or now - self._progress_time > PROGRESS_S:
            self._progress_time = now
            self.progress.max = total
            self.progress.value = done
        self.status.value = event.message

    def _show_preview(self, preview: SlicePreview) -> None:
        with self._batch():
            self._show_preview_unbatched(preview)

    def _show_preview_unbatched(self, preview: SlicePreview) -> None:
        method = self._job_method
        i = preview.index
        if method == ZERO_FILLED:
            return  # the live zero-filled view already shows this slice
        self._ensure_method(method)
        name = self._name(method)
        layer = find_layer(self.viewer, name)
        shape = (len(self.volume),) + tuple(self.volume.info.output_shape)
        if layer is None or tuple(layer.data.shape) != shape:
            data = np.zeros(shape, dtype=np.float32)
            data[i] = preview.image
            upsert_image(self.viewer, name, data, contrast_limits=self._display_limits(),
                         metadata={"nascsmri_role": "reconstruction", "nascsmri_method": method})
            self._arrange()
        else:
            set_slice(layer, i, preview.image)
        if self.reference is not None:
            self._set_error_slice(method, i, preview.image)
        entry = self.metrics.setdefault(method, {"slices": [None] * len(self.volume), "volume": None})
        entry["slices"] = [None] * len(self.volume)
        entry["volume"] = None
        entry["slices"][i] = preview.metrics
        self._stale.discard(method)
        self._render_table()

    def _ensure_method(self, method: str) -> None:
        if method != ZERO_FILLED and method not in self._models:
            self._models.append(method)

    def _on_returned(self, value) -> None:
        with self._batch():
            self._on_returned_unbatched(value)

    def _on_returned_unbatched(self, value) -> None:
        if value is None:
            self.progress.value = self.progress.max
            self.status.value = f"{self._job_method}: current slice done"
            return
        result, per_slice, data_range, errors = value
        method = result.model
        if not np.array_equal(result.mask.lines, self._job_lines):
            _notify("warning", "napari-nascsmri: the volume was reconstructed with a different mask")
        self.last_result = result
        self._ensure_method(method)
        config = asdict(self._job_config)
        config["mask_file"] = None if self._temp_mask else config["mask_file"]
        common = {
            "nascsmri_config": config,
            "nascsmri_mask_lines": result.mask.lines.astype(np.uint8).tolist(),
            "nascsmri_realised_acceleration": float(result.mask.realised_acceleration),
            "nascsmri_mask_edited": self._temp_mask is not None,
            "nascsmri_seed": None if result.seed is None else list(np.atleast_1d(result.seed).tolist()),
        }
        slices = per_slice or {}
        # the mask may have been edited while the job ran: keep the live zero-filled view then
        mask_moved_on = not np.array_equal(self.editor.lines, self._job_lines)
        outputs = {} if mask_moved_on else {ZERO_FILLED: (result.zero_filled, result.zero_filled_metrics)}
        if method != ZERO_FILLED:
            outputs[method] = (result.reconstruction, result.metrics)
        for name, (data, volume_metrics) in outputs.items():
            meta = dict(common, nascsmri_role="reconstruction", nascsmri_method=name)
            if volume_metrics is not None:
                meta["nascsmri_metrics"] = {"volume": volume_metrics.as_dict(), "slices": slices.get(name),
                                            "data_range": data_range}
                self.metrics[name] = {"slices": slices.get(name), "volume": volume_metrics.as_dict()}
            upsert_image(self.viewer, self._name(name), data.astype(np.float32),
                         contrast_limits=self._display_limits(), metadata=meta)
            if errors and name in errors:
                layer = self._add_error_layer(name, errors[name])
                layer.metadata.update(common)
            self._stale.discard(name)
        if mask_moved_on:
            self._stale.add(method)
        else:
            self._zf_fresh = set(range(len(self.volume)))
        self._arrange()
        self._render_table()
        text = f"{method}: done, realised {result.mask.realised_acceleration:.2f}x"
        if result.metrics is not None:
            text += f", PSNR {result.metrics.psnr:.2f} dB"
        self.status.value = text
        for notice in result.notices:
            if notice not in self.volume.info.notices:
                _notify("info", f"napari-nascsmri: {notice}")

    def _on_errored(self, err: BaseException) -> None:
        from backend.errors import InputError

        text = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
        _notify("error", f"napari-nascsmri: {self._job_method}: {text}")
        self.status.value = f"{self._job_method}: failed"

    def _on_aborted(self) -> None:
        self.status.value = f"{self._job_method}: cancelled"
        self.progress.value = 0

    def _on_finished(self) -> None:
        if self._temp_mask is not None:
            try:
                os.unlink(self._temp_mask)
            except OSError:
                pass
            self._temp_mask = None
        self._job_method = None
        self.worker = None
        self.run_button.enabled = self.slice_button.enabled = self.source.enabled = True
        self.cancel_button.enabled = False

    # ===================================================================== export =============
    def export_mask(self, path) -> str | None:
        """Write the current (possibly edited) mask to ``path`` (.npy or .json)."""
        from backend.errors import InputError

        try:
            out = self.editor.export(path)
        except (InputError, OSError) as err:
            _notify("error", f"napari-nascsmri: {err}")
            return None
        self.status.value = f"mask written to {os.path.basename(out)}"
        return out

    def _on_export_clicked(self, *_) -> None:
        path = self.mask_path.value
        if not path or os.fspath(path) in ("", "."):
            _notify("warning", "napari-nascsmri: choose a mask file (.npy or .json) first")
            return
        self.export_mask(path)


def _tooltips(texts: dict) -> None:
    for widget, text in texts.items():
        if not widget.tooltip:
            widget.tooltip = text


def _fmt(key: str, values: dict | None) -> str:
    if not values or values.get(key) is None:
        return ""
    return METRIC_FORMATS[key].format(values[key])


def _metrics_html(rows: dict[str, dict[str, str]], index: int) -> str:
    """Rich text: a 'slice i' block and a 'volume' block, one line per method."""
    head = "".join(f"<th align='right'>&nbsp;{label}</th>" for label in ("PSNR dB", "SSIM", "NMSE"))
    lines = [f"<table cellspacing='0' cellpadding='1'><tr><th></th>{head}</tr>"]
    for block, title in (("slice", f"slice {index}"), ("volume", "volume")):
        lines.append(f"<tr><td colspan='4'><i>{title}</i></td></tr>")
        for name, row in rows.items():
            cells = "".join(f"<td align='right'>&nbsp;{row[f'{block} {k.upper()}']}</td>" for k in METRIC_KEYS)
            lines.append(f"<tr><td>{name}</td>{cells}</tr>")
    return "".join(lines) + "</table>"


def _cuda_name() -> str:
    import torch

    try:
        return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - informational only
        return "CUDA"
