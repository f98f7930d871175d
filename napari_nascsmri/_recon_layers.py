"""The reconstruction widget's layers and metrics table.

:class:`LayersMixin` is the part of :class:`~napari_nascsmri._widget.ReconstructionWidget`
that names its layers (``"<role> [<file stem>]"``), adds the |error| maps, arranges reference,
reconstructions, mask, error maps and k-space in napari's grid (linked contrast), and renders
the per-slice / per-volume PSNR / SSIM / NMSE table.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

from ._layers import arrange, find_layer, set_slice, show_colorbar, show_name, upsert_image
from ._shared import ZERO_FILLED

METRIC_KEYS = ("psnr", "ssim", "nmse")
METRIC_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "nmse": "{:.5f}"}
TABLE_COLUMNS = ("slice PSNR", "slice SSIM", "slice NMSE", "volume PSNR", "volume SSIM", "volume NMSE")
ERROR_COLORMAP = "inferno"
#: |error| maps are in percent of the reference maximum (``backend.viewer.error_percent``).
ERROR_UNITS = "% of reference max"
NO_REFERENCE = ("no reference in this file (fastMRI test layout: undersampled k-space only): "
                "PSNR / SSIM / NMSE need a fully sampled reference")


class LayersMixin:
    """Layer naming, error maps, grid arrangement and the metrics table of
    :class:`~napari_nascsmri._widget.ReconstructionWidget`."""

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

    def _on_canvas_resized(self, *_) -> None:
        """A resized canvas may fit the grid better turned (:func:`grid_layout`): re-lay out only
        then (a window drag sends many size events)."""
        if self.volume is None or not self.side_by_side.value or self._batch_depth or not self._layout:
            return
        from ._layers import grid_layout

        present = [[n for n in row if n in self.viewer.layers] for row in self._grid_rows()[0]]
        names, columns = grid_layout(present, self.viewer.canvas.size)
        if (*names, str(columns)) != self._layout[0]:
            self._arrange()

    def _grid_rows(self) -> tuple[list[list[str]], list[str], list[str]]:
        """The grid's rows (:func:`~napari_nascsmri._layers.arrange`), the images and the error maps:
        [reference, zero-filled, models] / [mask, |error| ...] / [k-space] / [coil images, coil maps]."""
        methods = [ZERO_FILLED] + self._models
        source = self._source_layer
        has_ref = self.reference is not None
        ref = [source.name] if has_ref and source is not None and source in self.viewer.layers else []
        errors = [self._name(f"|error| {m}") for m in methods] if has_ref else []
        images = ref + [self._name(m) for m in methods]
        coils = [self._name("coil images"), self._name("coil maps")]
        if has_ref:
            rows = [images, [self._name("mask")] + errors, [self._name("k-space")], coils]
        else:  # no reference, no error maps: the mask joins the images' row
            rows = [[self._name("mask")] + images, [self._name("k-space")], coils]
        return rows, images, errors

    def _arrange(self, *_) -> None:
        """Order and grid of :meth:`_grid_rows`; names, linked contrast, compare view."""
        if self._batch_depth:
            self._arrange_pending = True
            return
        self._arrange_pending = False
        if self.volume is None:
            return
        rows, images, errors = self._grid_rows()
        cells = arrange(self.viewer, rows, self.side_by_side.value)
        source = self._source_layer
        if self.reference is not None and source is not None and source in self.viewer.layers:
            show_name(source)
        layout = (cells, self.side_by_side.value)
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
