"""The reconstruction widget's mask and live zero-filled view.

:class:`MaskMixin` is the part of :class:`~napari_nascsmri._widget.ReconstructionWidget` that
builds the :class:`backend.config.ReconConfig`, redraws the mask from the settings
(:func:`backend.recon.volume_mask`), lets the mask layer be edited (click/drag toggles
phase-encode columns, or paints a 2-D pattern with a round brush; Undo / Redo), shows the seed
in use and the log-magnitude k-space, recomputes the zero-filled image of the current slice
(numpy FFT; other slices follow when the slider reaches them), and exports the mask.
"""

from __future__ import annotations

import os

import numpy as np

from ._layers import find_layer, set_slice, upsert_image
from ._mask_editor import mask_under_cursor
from ._recon_job import slice_metrics
from ._shared import FROM_FILE, ZERO_FILLED, _notify


class MaskMixin:
    """Mask, zero-filled view and mask export of :class:`~napari_nascsmri._widget.ReconstructionWidget`."""

    # ===================================================================== mask ===============
    @property
    def current_slice(self) -> int:
        n = len(self.volume) if self.volume is not None else 1
        step = self.viewer.dims.current_step  # volumes are 3-D: slices on the third-last axis
        return int(min(max(step[-3] if len(step) >= 3 else 0, 0), n - 1))

    def kspace(self, index: int) -> np.ndarray:
        """Centred complex k-space of slice ``index`` (cached): ``(H, W)``, or ``(coils, h, w)``
        for a multi-coil file reconstructed from its coils (:func:`backend.recon_coils.slice_kspace`)."""
        from backend.recon_coils import slice_kspace

        if index not in self._kspace_cache:
            self._kspace_cache[index] = slice_kspace(self.volume, index)
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
        if self.editor.reset(mask.lines, editable=file_mask is None, pattern=mask.pattern) and warn:
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

    def toggle_point(self, row: int, column: int) -> bool:
        """2-D pattern: toggle the brush's disc around one k-space point (a click on the mask)."""
        return self.editor.toggle_point(row, column)

    def _on_mask_changed(self) -> None:
        self.undo_button.enabled = self.editor.can_undo
        self.redo_button.enabled = self.editor.can_redo
        n, size = self.editor.num_sampled, self.editor.sampling.size
        unit = "lines" if self.editor.pattern is None else "points"
        self.brush.visible = self.editor.pattern is not None
        self.realised.value = f"{size / n:.2f}x ({n}/{size} {unit})" + (" - edited" if self.editor.edited else "")
        self._zf_fresh = set()
        if ZERO_FILLED in self.metrics:
            self.metrics[ZERO_FILLED]["volume"] = None
        self._stale = set(self._models)
        self._update_mask_layer()
        self.update_zero_filled()
        self._update_kspace_layer()
        self._update_coil_layers()
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

        from backend.masks import sampling_grid

        image = log_kspace(self.kspace(self.current_slice), self.editor.sampling)
        existing = find_layer(self.viewer, name)
        sampled = sampling_grid(self.editor.sampling, image.shape) > 0
        upsert_image(self.viewer, name, image, colormap="viridis",
                     contrast_limits=display_window(image[sampled], (1.0, 99.9)),
                     metadata={"nascsmri_role": "kspace", "nascsmri_slice": self.current_slice})
        if existing is None:
            self._arrange()

    def _update_coil_layers(self, *_) -> None:
        """The coil images and sensitivity maps of the current slice as two mosaics (multi-coil
        files, ``show_coils``; :func:`backend.recon_coils.coil_views`). The maps (BART's ESPIRiT
        for the default ``auto``) are estimated in a worker thread (inline with ``run_sync``);
        a result for a slice or mask no longer on display is dropped."""
        names = (self._name("coil images"), self._name("coil maps"))
        if not self.show_coils.value or self.volume is None or self.volume.info.kind != "multicoil" \
                or not hasattr(self.volume, "coil_slice"):
            self._coil_request = None
            for name in names:
                if name in self.viewer.layers:
                    self.viewer.layers.remove(name)
            return
        from backend.recon_coils import coil_views

        request = (self.current_slice, self.editor.sampling.copy())  # columns or a 2-D pattern
        self._coil_request = request
        kspace = self.kspace(request[0])  # the widget's cached coil k-space of the slice
        if self.run_sync:
            self._show_coil_views(request, coil_views(kspace, request[1]))
            return
        from napari.qt.threading import create_worker

        worker = create_worker(coil_views, kspace, request[1], _start_thread=False)
        worker.returned.connect(lambda views: self._show_coil_views(request, views))
        self._coil_worker = worker  # kept alive until it returns
        worker.start()

    def _show_coil_views(self, request, views) -> None:
        if self._coil_request is not request or self.volume is None:
            return  # superseded (another slice or mask, coils hidden, another volume)
        from backend.viewer import display_window, mosaic

        new = False
        for name, stack, role in ((self._name("coil images"), views[0], "coil_images"),
                                  (self._name("coil maps"), views[1], "coil_maps")):
            tiles = mosaic(stack)
            new |= find_layer(self.viewer, name) is None
            upsert_image(self.viewer, name, tiles, contrast_limits=display_window(tiles, floor_zero=True),
                         metadata={"nascsmri_role": role, "nascsmri_slice": request[0],
                                   "nascsmri_coils": int(stack.shape[0])})
        if new:
            self._arrange()

    # ===================================================================== zero-filled ========
    def zero_filled_slice(self, index: int) -> np.ndarray:
        """``|ifft2c(kspace * mask)|`` of one slice, centre-cropped to the output grid."""
        from backend.viewer import preview_slice

        return preview_slice(self.kspace(index), self.editor.sampling, self.volume.info.output_shape)

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
        if self.show_coils.value:
            self._update_coil_layers()
        self._render_table()

    # ===================================================================== export =============
    def export_mask(self, path) -> str | None:
        """Write the current (possibly edited) mask to ``path`` (.npy or .json)."""
        from ._shared import export_file

        return export_file(self.editor.export, path, self.status, "mask")

    def _on_export_clicked(self, *_) -> None:
        from ._shared import chosen_path

        path = chosen_path(self.mask_path.value, "a mask file (.npy or .json)")
        if path is not None:
            self.export_mask(path)
