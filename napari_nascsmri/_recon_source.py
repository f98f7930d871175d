"""The reconstruction widget's source: choosing, opening and closing the volume behind a layer.

:class:`SourceMixin` is the part of :class:`~napari_nascsmri._widget.ReconstructionWidget`
that lists the image layers opened by this plugin's reader (``metadata["nascsmri_source"]`` =
file path), reopens the file with :func:`backend.io.open_volume` for k-space, reads the
reference and its display window, removes the previous volume's layers on a switch, and
disconnects from the viewer when the widget goes away.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._shared import SOURCE_KEY, _notify


class SourceMixin:
    """Source handling of :class:`~napari_nascsmri._widget.ReconstructionWidget`."""

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
        self._kspace_cache = {} if volume.info.kind == "multicoil" else {0: first.kspace}
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
        has_coils = info.kind == "multicoil" and hasattr(volume, "coil_slice")
        self.show_coils.visible = has_coils
        if has_coils and self.show_coils.value:
            self._update_coil_layers()
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
        self._coil_request = None  # coil views still on their way belong to that volume
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
                            (self.viewer.layers.events.removed, self._refresh_sources),
                            (self.viewer.canvas.events.size, self._on_canvas_resized)):
            try:
                emitter.disconnect(cb)
            except Exception:  # viewer already gone
                pass
        try:
            self.viewer.mouse_drag_callbacks.remove(self._viewer_drag)
        except (ValueError, AttributeError, RuntimeError):
            pass
        self._close_volume()
