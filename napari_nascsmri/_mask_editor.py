"""The editable column mask of the reconstruction widget (no napari import here).

:class:`MaskEditor` holds the sampled phase-encode columns ``lines`` (bool ``(W,)``, columns of
*centred* k-space, as :mod:`backend.masks`; a 2-D pattern (:mod:`backend.masks_2d`) is held in
``pattern``, shown but not edited), toggles/paints them, and exports them -- or the pattern --
in exactly the two formats :func:`backend.mask_files.load_mask_file` reads (so ``nascsmri
reconstruct --mask-file FILE`` reuses an edited mask or a drawn pattern):

* ``.npy``: a ``(W,)`` (or ``(H, W)``) uint8 array of 0/1;
* ``.json``: ``{"lines": [0, 1, ...]}`` (or ``{"pattern": [[0, 1, ...], ...]}``).

:meth:`MaskEditor.drag_callback` is a napari ``mouse_drag_callbacks`` generator for the mask
layer (a 2-D ``H x W`` image): a press toggles the column under the cursor (column = data x
coordinate), dragging paints the same new state over the columns it crosses; a drag is one
:meth:`MaskEditor.undo` step. :func:`mask_under_cursor` tells whether a viewer-level mouse event
is over the mask layer (its grid cell, or the top visible layer), whichever layer is active.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np


class MaskEditor:
    """State of an editable column mask.

    Args:
        on_change: called with no argument after every change of ``lines``.
    """

    #: Undo steps kept.
    HISTORY = 100

    def __init__(self, on_change: Callable[[], None] | None = None):
        self.lines: np.ndarray | None = None
        self.pattern: np.ndarray | None = None  # a 2-D mask (H, W): shown, not edited
        self.edited = False
        self.editable = True
        self.on_change = on_change
        self._undo: list[tuple[np.ndarray, bool]] = []
        self._redo: list[tuple[np.ndarray, bool]] = []
        self._stroke: tuple[np.ndarray, bool] | None = None
        self._stroke_open = False

    # -- state ---------------------------------------------------------------------------------
    def reset(self, lines: np.ndarray, editable: bool = True, pattern: np.ndarray | None = None) -> bool:
        """Start from a freshly drawn (or file) mask; clears the edited flag. ``pattern``: a 2-D
        mask ``(H, W)`` (``lines`` its sampled columns), which is shown but not editable.

        Returns True when hand edits were discarded; they stay one :meth:`undo` away.
        """
        self.pattern = None if pattern is None else np.asarray(pattern, dtype=bool).copy()
        editable = editable and pattern is None
        new = np.asarray(lines, dtype=bool).copy()
        discarded = self.edited and self.lines is not None and not np.array_equal(new, self.lines)
        if discarded and editable:
            self._push()
        elif not discarded:
            self._undo, self._redo = [], []
        self.lines = new
        self.edited = False
        self.editable = editable
        return discarded

    def forget(self) -> None:
        """Drop the edited flag and the undo history (a new volume)."""
        self.edited = False
        self._undo, self._redo = [], []

    # -- undo / redo -----------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _push(self) -> None:
        self._undo.append((self.lines.copy(), self.edited))
        del self._undo[: -self.HISTORY]
        self._redo = []

    def _restore(self, source: list, target: list) -> bool:
        if not source or not self.editable:
            return False
        target.append((self.lines.copy(), self.edited))
        lines, edited = source.pop()
        self.lines, self.edited = lines.copy(), edited
        if self.on_change is not None:
            self.on_change()
        return True

    def undo(self) -> bool:
        """Go back one edit (a click, a drag, or a reset that discarded edits)."""
        return self._restore(self._undo, self._redo)

    def redo(self) -> bool:
        return self._restore(self._redo, self._undo)

    def begin_stroke(self) -> None:
        """Group the changes until :meth:`end_stroke` into one undo step (a drag)."""
        if self.lines is not None:
            self._stroke = (self.lines.copy(), self.edited)
            self._stroke_open = True

    def end_stroke(self) -> None:
        self._stroke, self._stroke_open = None, False

    @property
    def sampling(self) -> np.ndarray | None:
        """What multiplies k-space: the 2-D pattern when there is one, else ``lines``."""
        return self.lines if self.pattern is None else self.pattern

    @property
    def num_sampled(self) -> int:
        return 0 if self.lines is None else int(self.sampling.sum())

    @property
    def realised_acceleration(self) -> float:
        """``W / sampled columns`` (2-D: ``H W / sampled points``; inf when nothing is sampled)."""
        n = self.num_sampled
        return float("inf") if n == 0 else self.sampling.size / n

    def as_image(self, height: int) -> np.ndarray:
        """The mask as a 2-D float32 ``(height, W)`` image (1 on sampled columns or points)."""
        if self.pattern is not None:
            return self.pattern.astype(np.float32)
        return np.repeat(self.lines[None, :].astype(np.float32), height, axis=0)

    def set_range(self, start: int, stop: int, state: bool) -> bool:
        """Set columns ``start..stop`` (inclusive, either order) to ``state``.

        Refuses (returns False) when the mask is not editable, a column is out of range or the
        change would leave no sampled column. Returns True when ``lines`` changed.
        """
        if self.lines is None or not self.editable:
            return False
        lo, hi = sorted((int(start), int(stop)))
        if lo < 0 or hi >= self.lines.size:
            return False
        new = self.lines.copy()
        new[lo : hi + 1] = bool(state)
        if not new.any() or np.array_equal(new, self.lines):
            return False
        if self._stroke is not None:  # the first change of a drag records the state before it
            self._undo.append(self._stroke)
            del self._undo[: -self.HISTORY]
            self._redo, self._stroke = [], None
        elif not self._stroke_open:
            self._push()
        self.lines = new
        self.edited = True
        if self.on_change is not None:
            self.on_change()
        return True

    def toggle(self, column: int) -> bool:
        """Toggle one column; returns True when the mask changed."""
        if self.lines is None or not 0 <= column < self.lines.size:
            return False
        return self.set_range(column, column, not self.lines[column])

    # -- files -----------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike) -> str:
        """Write the mask (the 2-D pattern when there is one) with
        :func:`backend.mask_files.write_mask_file` (``.npy`` or ``.json``)."""
        from backend.errors import InputError
        from backend.mask_files import write_mask_file

        path = os.fspath(path)
        if self.lines is None:
            raise InputError(path, "no mask to export: choose a source volume first")
        return write_mask_file(path, self.sampling)

    # -- napari mouse interaction --------------------------------------------------------------
    def column_at(self, layer, position) -> int | None:
        """Column index under a world ``position`` on the 2-D mask ``layer`` (None outside)."""
        if self.lines is None:
            return None
        x = float(layer.world_to_data(position)[-1])
        col = int(np.floor(x + 0.5))
        return col if 0 <= col < self.lines.size else None

    def drag_callback(self, layer, event):
        """napari mouse-drag callback: press toggles a column, dragging paints that state."""
        col = self.column_at(layer, event.position)
        if col is None or not self.editable:
            return
        state = not self.lines[col]
        self.begin_stroke()
        try:
            self.set_range(col, col, state)
            last = col
            yield
            while event.type == "mouse_move":
                col = self.column_at(layer, event.position)
                if col is not None and col != last:
                    self.set_range(last, col, state)
                    last = col
                yield
        finally:
            self.end_stroke()


def mask_under_cursor(viewer, mask_layer, event) -> bool:
    """True when the mouse ``event`` is over ``mask_layer`` as the user sees it.

    Grid mode: the mask is the top visible layer of the grid cell under the cursor
    (``event.viewbox``, napari >= 0.9). One view: the mask is the top visible layer or the
    active one. Either way the position must fall inside the mask's columns.
    """
    if mask_layer is None or mask_layer not in viewer.layers or not mask_layer.visible:
        return False
    layers = list(viewer.layers)
    grid = getattr(getattr(viewer, "canvas", None), "grid", None) or getattr(viewer, "grid", None)
    cell = getattr(event, "viewbox", None)
    if grid is not None and grid.enabled and cell is not None and hasattr(grid, "contents_at"):
        inside = [layers[i] for i in grid.contents_at(tuple(cell), layers)]
        visible = [layer for layer in inside if layer.visible]
        on_top = bool(visible) and visible[-1] is mask_layer
    else:
        visible = [layer for layer in layers if layer.visible]
        on_top = (bool(visible) and visible[-1] is mask_layer) or viewer.layers.selection.active is mask_layer
    if not on_top:
        return False
    y, x = np.asarray(mask_layer.world_to_data(event.position), dtype=float)[-2:]
    h, w = mask_layer.data.shape[-2:]
    return -0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5
