"""The mask editor's state machine without napari (issue 21: 2-D patterns are edited too):
brush discs against hand counts, strokes as one undo step, refusals."""

from __future__ import annotations

import numpy as np

from napari_nascsmri._mask_editor import MaskEditor


def editor_with(pattern: np.ndarray) -> MaskEditor:
    editor = MaskEditor()
    editor.reset(pattern.any(0), pattern=pattern)
    return editor


def test_a_click_sets_the_brush_disc_and_keeps_lines_in_step():
    pattern = np.zeros((32, 40), dtype=bool)
    pattern[0, 0] = True  # something sampled far from the click
    editor = editor_with(pattern)
    editor.brush = 2
    assert editor.toggle_point(10, 20)
    # radius 2 (+0.5): the 5x5 square less its 4 corners = 21 points, by hand
    changed = editor.pattern & ~pattern
    assert changed.sum() == 21 and changed[8:13, 18:23].sum() == 21
    assert not changed[8, 18] and changed[8, 20] and changed[10, 22]
    np.testing.assert_array_equal(editor.lines, editor.pattern.any(0))
    assert editor.edited and editor.realised_acceleration == 32 * 40 / 22
    # a second click on the (now sampled) centre clears the same disc: back to the start
    assert editor.toggle_point(10, 20)
    np.testing.assert_array_equal(editor.pattern, pattern)
    editor.brush = 0
    assert editor.toggle_point(31, 39) and editor.pattern.sum() == 2  # one point
    # radius 1 (+0.5) is the 3x3 square; at a corner it is clipped to 2x2
    editor.brush = 1
    assert editor.toggle_point(31, 0) and editor.pattern[29:, :3].sum() == 4 and editor.pattern[30:, :2].all()


def test_a_drag_paints_a_band_and_is_one_undo_step():
    pattern = np.zeros((20, 30), dtype=bool)
    pattern[:, 15] = True
    editor = editor_with(pattern)
    editor.brush = 1
    editor.begin_stroke()
    assert editor.paint((5, 3), (5, 3), True)
    assert editor.paint((5, 3), (5, 12), True)  # a horizontal segment
    editor.end_stroke()
    band = editor.pattern & ~pattern
    # by hand: radius 1 (+0.5) covers the 3x3 square around each point: rows 4-6, columns 2-13
    assert band[4:7, 2:14].all() and band.sum() == 3 * 12
    assert editor.undo() and np.array_equal(editor.pattern, pattern) and not editor.edited
    assert editor.redo() and band.sum() == (editor.pattern & ~pattern).sum()
    assert not editor.can_redo


def test_refusals_column_masks_unchanged_and_nothing_sampled():
    pattern = np.zeros((8, 8), dtype=bool)
    pattern[4, 4] = True
    editor = editor_with(pattern)
    editor.brush = 0
    assert not editor.toggle_point(4, 4)  # would sample nothing
    assert not editor.set_range(0, 3, True)  # columns are not edited on a 2-D pattern
    assert not editor.toggle_point(8, 0) and not editor.edited
    editor.editable = False  # a test file's own mask
    assert not editor.toggle_point(0, 0)
    lines = MaskEditor()
    lines.reset(np.array([1, 0, 0, 1], dtype=bool))
    assert not lines.paint((0, 0), (0, 1), True) and lines.toggle(1)
    np.testing.assert_array_equal(lines.lines, [1, 1, 0, 1])


def test_reset_after_2d_edits_warns_and_undo_brings_the_edits_back():
    pattern = np.zeros((8, 8), dtype=bool)
    pattern[:, 3] = True
    editor = editor_with(pattern)
    assert editor.toggle_point(1, 6)
    edited = editor.pattern.copy()
    assert editor.reset(pattern.any(0), pattern=pattern)  # the settings redrew the same pattern
    np.testing.assert_array_equal(editor.pattern, pattern)
    assert editor.undo()
    np.testing.assert_array_equal(editor.pattern, edited)
    assert editor.edited
