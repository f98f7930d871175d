"""Layer bookkeeping for the reconstruction widget: add-or-update by name, linked contrast
limits, the side-by-side grid layout and colourbars. napari is only touched through the viewer
object handed in (no napari import at module level).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import napari


def find_layer(viewer: napari.viewer.Viewer, name: str):
    """The layer called ``name`` or None."""
    return viewer.layers[name] if name in viewer.layers else None


def upsert_image(
    viewer: napari.viewer.Viewer,
    name: str,
    data: np.ndarray,
    *,
    colormap: str = "gray",
    contrast_limits: Sequence[float] | None = None,
    metadata: dict | None = None,
):
    """Replace the data of the image layer ``name`` (same shape) or add a new one."""
    layer = find_layer(viewer, name)
    if layer is not None and tuple(layer.data.shape) != tuple(data.shape):
        viewer.layers.remove(name)
        layer = None
    if layer is None:
        kwargs = {} if contrast_limits is None else {"contrast_limits": list(contrast_limits)}
        layer = viewer.add_image(data, name=name, colormap=colormap, metadata=metadata or {}, **kwargs)
        show_name(layer)
    else:
        layer.data = data
        if contrast_limits is not None:
            layer.contrast_limits = list(contrast_limits)
        if metadata:
            layer.metadata.update(metadata)
    return layer


def set_slice(layer, index: int, image: np.ndarray) -> None:
    """Write one slice of a 3-D image layer in place and redraw."""
    layer.data[index] = image
    layer.refresh()


def show_colorbar(layer) -> None:
    """Show a small colourbar in the layer's view where this napari has one (napari >= 0.5)."""
    colorbar = getattr(layer, "colorbar", None)
    if colorbar is not None:
        colorbar.size = (12, 90)
        colorbar.font_size = 8
        colorbar.position = "bottom_right"  # the name overlay sits top left
        colorbar.visible = True


def show_name(layer) -> None:
    """Write the layer name in its view (labels the grid cells; napari >= 0.6)."""
    overlay = getattr(layer, "name_overlay", None)
    if overlay is not None:
        overlay.font_size = 9
        overlay.visible = True


def grid_of(viewer: napari.viewer.Viewer):
    """The grid model (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    grid = getattr(canvas, "grid", None)
    return grid if grid is not None else viewer.grid


def grid_layout(rows: Sequence[Sequence[str]], canvas_hw: Sequence[float]) -> tuple[list[str], int]:
    """The cell order and the number of columns that give the largest square cells on a canvas
    of ``canvas_hw`` pixels, keeping every reconstruction next to its ``|error|`` map.

    ``rows``: the images row, then (with a reference) the row of the mask and the error maps of
    the same length, then the rest (k-space). Candidates: the rows as grid rows (each error map
    under its image), and, with an image and an error row, the rows turned into columns (each
    error map right of its image: a narrow canvas beside docked widgets). Without an error row
    the images may wrap onto any number of columns. Ties keep the rows as rows.
    """
    rows = [list(r) for r in rows if r]
    if not rows:
        return [], 1
    height, width = (max(float(v), 1.0) for v in canvas_hw)
    flat = [n for r in rows for n in r]

    def cell(columns: int) -> float:
        return min(width / columns, height / -(-len(flat) // columns))

    options = [(flat, len(rows[0]))]
    if len(rows) > 1 and len(rows[1]) == len(rows[0]) > 1:
        pairs = [n for pair in zip(rows[0], rows[1]) for n in pair]
        options.append((pairs + [n for r in rows[2:] for n in r], 2))
    elif len(rows) == 1 or len(rows[1]) != len(rows[0]):
        options += [(flat, c) for c in range(1, len(flat) + 1)]
    return max(options, key=lambda o: (round(cell(o[1]), 6), o is options[0]))


def reorder(layers, order: Sequence[str]) -> None:
    """Put ``layers`` (a napari LayerList) in the order of the names ``order`` by single moves,
    left to right, only where a layer is not already in place. (napari 0.9's ``move_multiple``
    scrambles interleaved sources, e.g. indices [0, 4, 1, 5, ...] of all layers; it moves one
    layer at a time too, so this costs no more scene updates.)"""
    for i, name in enumerate(order):
        j = next(k for k, layer in enumerate(layers) if layer.name == name)
        if j != i:
            layers.move(j, i)


def arrange(viewer: napari.viewer.Viewer, rows: Sequence[Sequence[str]], grid: bool) -> tuple[str, ...]:
    """Put the named layers last in the layer list and lay them out as a grid.

    With ``grid``, napari's grid mode shows one layer per cell in list order; when the viewer
    holds no other visible layer, the order and the columns are :func:`grid_layout`'s for the
    canvas' size (each |error| map next to its reconstruction, cells as large as the canvas
    allows); otherwise napari chooses the grid. Returns the layout (the cell order, then the
    number of columns as a string) so that the caller can tell a new layout from the old one.
    """
    present = [[n for n in row if n in viewer.layers] for row in rows]
    model = grid_of(viewer)
    size = getattr(getattr(viewer, "canvas", None), "size", None) or (800, 600)
    names, columns = grid_layout(present, size)
    current = [layer.name for layer in viewer.layers]
    if current[len(current) - len(names):] != names:
        reorder(viewer.layers, [n for n in current if n not in names] + names)
    others = [layer for layer in viewer.layers if layer.name not in names and layer.visible]
    if grid:
        shape = (-1, columns) if not others else (-1, -1)
        if tuple(model.shape) != shape:
            model.shape = shape
    if model.enabled != bool(grid):
        model.enabled = bool(grid)
    return (*names, str(columns))


class LinkedContrast:
    """Keep the contrast limits of several image layers equal (an edit on one moves all)."""

    def __init__(self) -> None:
        self._layers: list = []
        self._busy = False

    def set_layers(self, layers: Sequence) -> None:
        self.clear()
        self._layers = [layer for layer in layers if layer is not None]
        for layer in self._layers:
            layer.events.contrast_limits.connect(self._sync)
        if self._layers:
            self.apply(self._layers[0].contrast_limits)

    def clear(self) -> None:
        for layer in self._layers:
            try:
                layer.events.contrast_limits.disconnect(self._sync)
            except (RuntimeError, TypeError, ValueError):
                pass
        self._layers = []

    def apply(self, limits: Sequence[float]) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            limits = [float(limits[0]), float(limits[1])]
            for layer in self._layers:
                if not np.allclose(layer.contrast_limits, limits):
                    layer.contrast_limits = limits
        finally:
            self._busy = False

    def _sync(self, event=None) -> None:
        source = getattr(event, "source", None)
        if source is not None and hasattr(source, "contrast_limits"):
            self.apply(source.contrast_limits)
