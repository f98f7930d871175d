"""The editable column mask of the reconstruction widget (no napari import here).

:class:`MaskEditor` holds the sampled phase-encode columns ``lines`` (bool ``(W,)``, columns of
*centred* k-space, as :mod:`backend.masks`; a 2-D pattern (:mod:`backend.masks_2d`) is held in
``pattern``, whose points are painted with a round brush of ``brush`` pixels' radius),
toggles/paints them, and exports them -- or the pattern -- in exactly the two formats
:func:`backend.mask_files.load_mask_file` reads (so ``nascsmri reconstruct --mask-file FILE``
reuses an edited mask or a drawn pattern):

* ``.npy``: a ``(W,)`` (or ``(H, W)``) uint8 array of 0/1;
* ``.json``: ``{"lines": [0, 1, ...]}`` (or ``{"pattern": [[0, 1, ...], ...]}``).

:meth:`MaskEditor.drag_callback` is a napari ``mouse_drag_callbacks`` generator for the mask
layer (a 2-D ``H x W`` image): a press toggles the column under the cursor (column = data x
coordinate; with a 2-D pattern, the brush's disc around the point under the cursor), dragging
paints the same new state over the columns (points) it crosses; a drag is one
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
    #: Default brush radius (pixels) for 2-D patterns.
    BRUSH = 2

    def __init__(self, on_change: Callable[[], None] | None = None):
        self.lines: np.ndarray | None = None
        self.pattern: np.ndarray | None = None  # a 2-D mask (H, W), painted with ``brush``
        self.brush = self.BRUSH
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
        mask ``(H, W)`` (``lines`` its sampled columns).

        Returns True when hand edits were discarded; they stay one :meth:`undo` away.
        """
        new = np.asarray(lines, dtype=bool).copy()
        new_pattern = None if pattern is None else np.asarray(pattern, dtype=bool).copy()
        discarded = self.edited and self.lines is not None and not (
            np.array_equal(new, self.lines) and _same(new_pattern, self.pattern))
        if discarded and editable:
            self._push()
        elif not discarded:
            self._undo, self._redo = [], []
        self.lines, self.pattern = new, new_pattern
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

    def _state(self) -> tuple:
        return self.lines.copy(), None if self.pattern is None else self.pattern.copy(), self.edited

    def _push(self) -> None:
        self._undo.append(self._state())
        del self._undo[: -self.HISTORY]
        self._redo = []

    def _restore(self, source: list, target: list) -> bool:
        if not source or not self.editable:
            return False
        target.append(self._state())
        lines, pattern, edited = source.pop()
        self.lines, self.edited = lines.copy(), edited
        self.pattern = None if pattern is None else pattern.copy()
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
            self._stroke = self._state()
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
        if self.pattern is not None or lo < 0 or hi >= self.lines.size:
            return False
        new = self.lines.copy()
        new[lo : hi + 1] = bool(state)
        return self._commit(new, None)

    def paint(self, start, stop, state: bool) -> bool:
        """2-D pattern: set every point within ``brush`` pixels of the segment from ``start`` to
        ``stop`` (``(row, column)`` each, the same point for a click) to ``state``. Refuses as
        :meth:`set_range` does (and on a column mask). Returns True when the pattern changed."""
        if self.pattern is None or not self.editable:
            return False
        (r0, c0), (r1, c1) = np.asarray(start, float), np.asarray(stop, float)
        n = int(np.ceil(max(abs(r1 - r0), abs(c1 - c0)))) + 1  # points along the segment, <= 1 px apart
        rows, cols = np.linspace(r0, r1, n), np.linspace(c0, c1, n)
        H, W = self.pattern.shape
        yy, xx = np.mgrid[:H, :W]
        r = float(self.brush) + 0.5
        box = (slice(max(int(min(r0, r1) - r), 0), int(max(r0, r1) + r) + 1),
               slice(max(int(min(c0, c1) - r), 0), int(max(c0, c1) + r) + 1))
        near = np.zeros(self.pattern.shape, dtype=bool)
        sub_y, sub_x = yy[box], xx[box]
        for y, x in zip(rows, cols):
            near[box] |= (sub_y - y) ** 2 + (sub_x - x) ** 2 <= r * r
        new = self.pattern.copy()
        new[near] = bool(state)
        return self._commit(new.any(0), new)

    def _commit(self, lines: np.ndarray, pattern: np.ndarray | None) -> bool:
        """Take a changed mask (one undo step, or part of the open stroke's)."""
        if not lines.any() or (np.array_equal(lines, self.lines) and _same(pattern, self.pattern)):
            return False
        if self._stroke is not None:  # the first change of a drag records the state before it
            self._undo.append(self._stroke)
            del self._undo[: -self.HISTORY]
            self._redo, self._stroke = [], None
        elif not self._stroke_open:
            self._push()
        self.lines, self.pattern = lines, pattern
        self.edited = True
        if self.on_change is not None:
            self.on_change()
        return True

    def toggle(self, column: int) -> bool:
        """Toggle one column; returns True when the mask changed."""
        if self.lines is None or not 0 <= column < self.lines.size:
            return False
        return self.set_range(column, column, not self.lines[column])

    def toggle_point(self, row: int, column: int) -> bool:
        """2-D pattern: toggle the brush's disc around ``(row, column)`` (to the opposite of that
        point's state); returns True when the pattern changed."""
        if self.pattern is None or not (0 <= row < self.pattern.shape[0] and 0 <= column < self.pattern.shape[1]):
            return False
        return self.paint((row, column), (row, column), not self.pattern[row, column])

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
        point = self.point_at(layer, position)
        return None if point is None else point[1]

    def point_at(self, layer, position) -> tuple[int, int] | None:
        """``(row, column)`` under a world ``position`` on the mask ``layer`` (None outside)."""
        if self.lines is None:
            return None
        y, x = np.floor(np.asarray(layer.world_to_data(position), dtype=float)[-2:] + 0.5).astype(int)
        H, W = layer.data.shape[-2:]
        return (int(y), int(x)) if 0 <= x < self.lines.size and 0 <= y < H and x < W else None

    def drag_callback(self, layer, event):
        """napari mouse-drag callback: press toggles a column (2-D: the brush's disc), dragging
        paints that state."""
        point = self.point_at(layer, event.position)
        if point is None or not self.editable:
            return
        two_d = self.pattern is not None
        state = not (self.pattern[point] if two_d else self.lines[point[1]])
        self.begin_stroke()
        try:
            if two_d:
                self.paint(point, point, state)
            else:
                self.set_range(point[1], point[1], state)
            last = point
            yield
            while event.type == "mouse_move":
                point = self.point_at(layer, event.position)
                if point is not None and point != last and (two_d or point[1] != last[1]):
                    if two_d:
                        self.paint(last, point, state)
                    else:
                        self.set_range(last[1], point[1], state)
                    last = point
                yield
        finally:
            self.end_stroke()


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


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
