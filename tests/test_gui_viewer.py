"""The reconstruction widget as a viewer (issue 19, defects 5, 6, 8, 9, 12), with real napari +
Qt under Xvfb: the seed in use, test-layout files without a reference, switching volumes,
percentile display windows and |error| maps in %, a tooltip on every control."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_widget(make_napari_viewer):
    from napari_nascsmri._widget import ReconstructionWidget

    viewer = make_napari_viewer()

    def dock():
        widget = ReconstructionWidget(viewer)
        widget.run_sync = True
        viewer.window.add_dock_widget(widget, name="Reconstruction", area="right")
        return widget

    return viewer, dock


def controls(container):
    from magicgui.widgets import Container

    for w in container:
        if isinstance(w, Container):
            yield from controls(w)
        else:
            yield w


def test_seed_in_use_is_shown(viewer_widget, sample_file):
    from backend.config import ReconConfig
    from backend.masks import make_mask
    from backend.recon import volume_mask

    viewer, dock = viewer_widget
    viewer.open(str(sample_file), plugin="napari-nascsmri")
    widget = dock()
    assert widget.auto_seed.value and "per-volume" in widget.seed_used.value
    assert sample_file.name in widget.seed_used.value
    assert widget.seed.native.isHidden()  # no stale number on display
    mask, _ = volume_mask(widget.volume.info, ReconConfig())
    np.testing.assert_array_equal(widget.editor.lines, mask.lines)
    widget.auto_seed.value = False
    assert widget.seed.enabled and not widget.seed.native.isHidden()
    widget.seed.value = 7
    assert widget.seed_used.value == "7"
    np.testing.assert_array_equal(widget.editor.lines, make_mask("random", 224, 4, 0.08, seed=7).lines)
    widget.auto_seed.value = True
    assert "per-volume" in widget.seed_used.value
    np.testing.assert_array_equal(widget.editor.lines, mask.lines)


def test_test_layout_file_says_no_reference_and_shows_one_image(viewer_widget, fastmri_files):
    from napari_nascsmri._layers import grid_of

    viewer, dock = viewer_widget
    [source] = viewer.open(str(fastmri_files["test"]), plugin="napari-nascsmri")
    widget = dock()
    assert widget.volume is not None and widget.reference is None
    assert "no reference" in widget.metrics_table.value
    assert "file's own mask" in widget.seed_used.value
    visible = [layer.name for layer in viewer.layers if layer.visible]
    assert source.name not in visible  # the reader's image == the zero-filled view: shown once
    assert visible == [widget._name("mask"), widget._name("zero-filled")]
    # two cells only (side by side or stacked, whichever gives larger images): no empty row
    rows, columns = grid_of(viewer).actual_shape([viewer.layers[n] for n in visible])
    assert grid_of(viewer).enabled and rows * columns == 2
    widget.method.value = "tv"
    widget.reconstruct(whole_volume=False)
    assert "no reference" in widget.metrics_table.value


def test_switching_source_removes_the_previous_volumes_layers(viewer_widget, sample_file, fastmri_files):
    viewer, dock = viewer_widget
    [sample] = viewer.open(str(sample_file), plugin="napari-nascsmri")
    widget = dock()
    widget.method.value = "tv"
    widget.reconstruct(whole_volume=False)
    old = widget._name("")
    assert any(layer.name.endswith(old[1:]) for layer in viewer.layers)
    [single] = viewer.open(str(fastmri_files["single"]), plugin="napari-nascsmri")
    widget.source.value = single
    assert widget.volume.info.path == str(fastmri_files["single"])
    names = [layer.name for layer in viewer.layers]
    assert not [n for n in names if n.endswith(old[1:])], names  # only the reader's layers remain
    assert sample.name in names and single.name in names
    assert widget._name("zero-filled") in names and widget._name("mask") in names
    # and back: the first volume's layers are rebuilt, the second's removed
    widget.source.value = sample
    names = [layer.name for layer in viewer.layers]
    assert not [n for n in names if n.endswith("[file_single]")], names


def test_percentile_windows_and_error_maps_in_percent(viewer_widget, sample_file):
    from backend.viewer import display_window, error_percent

    viewer, dock = viewer_widget
    [source] = viewer.open(str(sample_file), plugin="napari-nascsmri")
    widget = dock()
    ref = np.asarray(source.data)
    hi = float(np.percentile(ref, 99.5))
    assert hi < ref.max()
    assert tuple(source.contrast_limits) == pytest.approx((0.0, hi), rel=1e-5)
    zf = viewer.layers[widget._name("zero-filled")]
    assert tuple(zf.contrast_limits) == pytest.approx((0.0, hi), rel=1e-5)
    err = viewer.layers[widget._name("|error| zero-filled")]
    i = widget.current_slice
    expected = error_percent(zf.data[i], ref[i], ref.max())
    np.testing.assert_allclose(err.data[i], expected, rtol=1e-5, atol=1e-4)
    assert err.contrast_limits[0] == 0 and err.contrast_limits[1] == pytest.approx(
        display_window(expected, floor_zero=True)[1], rel=1e-5)
    assert err.contrast_limits[1] < 100  # a window, not [0, max]
    widget.show_kspace.value = True
    k = viewer.layers[widget._name("k-space")]
    assert k.contrast_limits[1] < k.data.max()


def test_every_control_has_a_tooltip(viewer_widget, sample_file):
    from napari_nascsmri._search_widget import SearchWidget
    from napari_nascsmri._train_widget import TrainWidget

    viewer, dock = viewer_widget
    viewer.open(str(sample_file), plugin="napari-nascsmri")
    for widget in (dock(), SearchWidget(viewer), TrainWidget(viewer)):
        missing = [w.label or w.name or type(w).__name__ for w in controls(widget) if not w.tooltip]
        assert missing == [], f"{type(widget).__name__}: no tooltip on {missing}"
