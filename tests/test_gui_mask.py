"""Mask editing in the reconstruction widget with real napari + Qt under Xvfb (issue 19,
defects 3 and 4): edits whichever layer is active, undo/redo, a warning before edits are lost."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def rig(reconstruction_rig):
    return reconstruction_rig


def warnings_since(start: int) -> list[str]:
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [str(n.message) for n in notification_manager.records[start:]
            if n.severity == NotificationSeverity.WARNING]


def notification_count() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def mask_cell_centre(viewer, widget, qtbot):
    """Canvas position of the centre of the mask layer's grid cell (grid mode on)."""
    from napari_nascsmri._layers import grid_of

    canvas = viewer.window._qt_viewer.canvas
    grid = grid_of(viewer)
    assert grid.enabled
    qtbot.wait(200)
    mask = viewer.layers[widget._name("mask")]
    row, col = grid.position(list(viewer.layers).index(mask), list(viewer.layers))
    viewbox = canvas.grid[row, col]
    rect = viewbox.inner_rect
    pos = np.asarray(viewbox.transform.translate[:2]) + [rect.pos[0] + rect.size[0] / 2,
                                                          rect.pos[1] + rect.size[1] / 2]
    found, _ = canvas._get_viewbox_at(pos)
    assert found is viewbox
    column = int(np.floor(canvas._map_canvas2world(pos, viewbox)[-1] + 0.5))
    return canvas, pos, column


def click(canvas, pos):
    canvas._scene_canvas.events.mouse_press(pos=pos, modifiers=(), button=0)
    canvas._scene_canvas.events.mouse_release(pos=pos, modifiers=(), button=0)


def test_edits_work_whichever_layer_is_active_and_undo(rig, qtbot):
    viewer, widget, source = rig
    error = viewer.layers[widget._name("|error| zero-filled")]
    viewer.layers.selection.active = error  # e.g. after docking: not the mask
    canvas, pos, column = mask_cell_centre(viewer, widget, qtbot)
    before = widget.editor.lines.copy()
    camera = (viewer.camera.center, viewer.camera.zoom)
    click(canvas, pos)
    assert widget.editor.lines[column] == (not before[column]), "a click on the mask cell did nothing"
    assert widget.editor.edited and "edited" in widget.realised.value
    # a drag over a few columns: one undo step; the view did not pan
    from vispy.app.canvas import MouseEvent

    after_click = widget.editor.lines.copy()
    right = pos + [6 * viewer.camera.zoom, 0]
    press = MouseEvent(pos=pos + [2 * viewer.camera.zoom, 0], modifiers=(), button=0, type="mouse_press")
    canvas._scene_canvas.events.mouse_press(pos=press.pos, modifiers=(), button=0)
    canvas._scene_canvas.events.mouse_move(pos=right, modifiers=(), button=0, press_event=press)
    canvas._scene_canvas.events.mouse_release(pos=right, modifiers=(), button=0)
    assert not np.array_equal(widget.editor.lines, after_click)
    assert (viewer.camera.center, viewer.camera.zoom) == camera
    assert viewer.layers.selection.active is error  # editing did not steal the selection
    # a click on another cell (the reference) does not edit the mask
    viewer.layers.selection.active = source
    drawn = widget.editor.lines.copy()
    ref_pos = pos - [canvas.grid[0, 0].inner_rect.size[0] * 0 + 0, 0]
    from napari_nascsmri._layers import grid_of

    r, c = grid_of(viewer).position(list(viewer.layers).index(source), list(viewer.layers))
    vb = canvas.grid[r, c]
    ref_pos = np.asarray(vb.transform.translate[:2]) + [vb.inner_rect.size[0] / 2, vb.inner_rect.size[1] / 2]
    click(canvas, ref_pos)
    np.testing.assert_array_equal(widget.editor.lines, drawn)

    # undo: the drag, then the click; redo brings the click back
    assert widget.undo_button.enabled
    widget.undo_button.clicked.emit()
    np.testing.assert_array_equal(widget.editor.lines, after_click)
    widget.undo_button.clicked.emit()
    np.testing.assert_array_equal(widget.editor.lines, before)
    assert not widget.editor.edited and not widget.undo_button.enabled
    zf = viewer.layers[widget._name("zero-filled")]
    i = widget.current_slice
    from backend.fft import ifft2c_np

    np.testing.assert_allclose(zf.data[i], np.abs(ifft2c_np(widget.volume[i].kspace * before[None, :])),
                               rtol=1e-5, atol=1e-5)
    assert widget.redo_button.enabled
    widget.redo_button.clicked.emit()
    np.testing.assert_array_equal(widget.editor.lines, after_click)


def test_settings_change_warns_before_edits_are_lost(rig):
    viewer, widget, _ = rig
    col = int(np.flatnonzero(~widget.editor.lines)[0])
    assert widget.toggle_line(col)
    edited = widget.editor.lines.copy()
    for change in (lambda: setattr(widget.acceleration, "value", 8),
                   lambda: setattr(widget.mask_type, "value", "equispaced")):
        start = notification_count()
        change()
        assert any("hand edits" in w for w in warnings_since(start)), "no warning before edits were lost"
        assert not widget.editor.edited
        assert widget.undo_mask()  # the edits come back
        np.testing.assert_array_equal(widget.editor.lines, edited)
        assert widget.editor.edited
    # a change without edits, and the explicit reset, do not warn
    widget.reset_mask.clicked.emit()
    start = notification_count()
    widget.acceleration.value = 4
    assert not any("hand edits" in w for w in warnings_since(start))
