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


def arrange(viewer: napari.viewer.Viewer, rows: Sequence[Sequence[str]], grid: bool) -> None:
    """Put the named layers last in the layer list, row after row, and lay them out as a grid.

    With ``grid``, napari's grid mode shows one layer per cell in list order; when the viewer
    holds no other visible layer, the grid gets as many columns as the longest row so that the
    rows line up (each |error| map under its reconstruction).
    """
    names = [n for row in rows for n in row if n in viewer.layers]
    current = [layer.name for layer in viewer.layers]
    if current[len(current) - len(names):] != names:
        # one reorder (one scene-graph update) instead of one per layer: each update re-lays
        # out every grid cell and overlay, ~0.1-0.2 s apiece with a dozen layers
        viewer.layers.move_multiple([current.index(n) for n in names], len(current))
    model = grid_of(viewer)
    others = [layer for layer in viewer.layers if layer.name not in names and layer.visible]
    width = max((sum(n in viewer.layers for n in row) for row in rows), default=1)
    if grid:
        shape = (-1, width) if not others and width > 1 else (-1, -1)
        if tuple(model.shape) != shape:
            model.shape = shape
    if model.enabled != bool(grid):
        model.enabled = bool(grid)


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
