"""Mask editing in the reconstruction widget with real napari + Qt under Xvfb (issue 19,
defects 3 and 4): edits whichever layer is active, undo/redo, a warning before edits are lost;
2-D patterns painted with the brush (issue 21)."""

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


def test_2d_pattern_painted_by_a_drag_is_what_the_reconstruction_and_the_cli_use(rig, qtbot, tmp_path):
    """A drag across the mask cell of a Poisson-disc pattern paints the brush's band (the camera
    does not pan); the reconstruction then uses exactly the painted pattern, which is also what
    `nascsmri reconstruct --mask-file` reads back from the exported file; undo restores the
    drawn pattern."""
    import h5py
    from vispy.app.canvas import MouseEvent

    from backend.cli import main
    from backend.fft import ifft2c_np

    viewer, widget, source = rig
    widget.auto_seed.value = False
    widget.seed.value = 5
    widget.mask_type.value = "poisson"
    drawn = widget.editor.pattern.copy()
    assert not widget.brush.native.isHidden()
    widget.brush.value = 3
    canvas, pos, column = mask_cell_centre(viewer, widget, qtbot)
    camera = (viewer.camera.center, viewer.camera.zoom)
    start = pos - [20 * viewer.camera.zoom, 0]
    press = MouseEvent(pos=start, modifiers=(), button=0, type="mouse_press")
    canvas._scene_canvas.events.mouse_press(pos=start, modifiers=(), button=0)
    for step in (-10, 0, 10):
        canvas._scene_canvas.events.mouse_move(pos=pos + [step * viewer.camera.zoom, 0], modifiers=(),
                                               button=0, press_event=press)
        qtbot.wait(30)  # napari handles one pending mouse move per event-loop turn
    canvas._scene_canvas.events.mouse_release(pos=pos + [10 * viewer.camera.zoom, 0], modifiers=(), button=0)
    painted = widget.editor.pattern
    changed = painted != drawn
    rows, cols = np.nonzero(changed)
    assert changed.sum() > 50 and widget.editor.edited and "edited" in widget.realised.value
    assert rows.max() - rows.min() <= 6 and cols.max() - cols.min() >= 30  # a horizontal band, 7 rows at most
    assert (painted[changed] == painted[rows[0], cols[0]]).all()  # one state painted over the stroke
    assert (viewer.camera.center, viewer.camera.zoom) == camera
    zf = viewer.layers[widget._name("zero-filled")]
    i = widget.current_slice
    np.testing.assert_allclose(zf.data[i], np.abs(ifft2c_np(widget.volume[i].kspace * painted)), atol=1e-5)

    widget.method.value = "zero-filled"
    widget.reconstruct()
    np.testing.assert_array_equal(widget.last_result.mask.pattern, painted)
    assert viewer.layers[widget._name("zero-filled")].metadata["nascsmri_mask_edited"]
    widget.mask_path.value = tmp_path / "painted.npy"
    widget.export_button.clicked.emit()
    out = tmp_path / "cli.h5"
    assert main(["reconstruct", widget.volume.info.path, "--model", "zero-filled", "--mask-file",
                 str(tmp_path / "painted.npy"), "--out", str(out), "--quiet"]) == 0
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["mask_pattern"][()].astype(bool), painted)
        np.testing.assert_array_equal(f["reconstruction"][()], widget.last_result.reconstruction)
    assert widget.undo_mask() and np.array_equal(widget.editor.pattern, drawn) and not widget.editor.edited
