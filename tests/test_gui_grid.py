"""The side-by-side grid with several methods (issue #19, defect 7): cells as large as the canvas
allows, every |error| map next to its reconstruction, in a real napari (Xvfb) and by hand counts
of the layout rule."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nascsmri._layers import grid_layout, reorder

ROWS = [["ref", "zf", "nasn", "dccnn"], ["mask", "e zf", "e nasn", "e dccnn"], ["k-space"]]


def test_narrow_canvas_turns_the_rows_into_image_error_pairs():
    # 665 px wide beside the docks, 988 high: 4 columns give 166 px cells, 2 columns 197 px (5 rows)
    order, columns = grid_layout(ROWS, (988, 665))
    assert columns == 2
    assert order == ["ref", "mask", "zf", "e zf", "nasn", "e nasn", "dccnn", "e dccnn", "k-space"]


def test_wide_canvas_keeps_each_error_map_under_its_image():
    order, columns = grid_layout(ROWS, (900, 1600))  # 4 columns: 300 px cells; 2 columns: 180 px
    assert columns == 4 and order == [n for row in ROWS for n in row]


def test_without_a_reference_the_images_wrap_to_the_best_column_count():
    order, columns = grid_layout([["mask", "zf", "nasn", "dccnn", "tv"], ["k-space"]], (600, 600))
    # 6 cells on 600x600: 2 columns x 3 rows or 3 x 2 give 200 px; 1 or 6 columns give 100 px
    assert order == ["mask", "zf", "nasn", "dccnn", "tv", "k-space"] and columns in (2, 3)


def test_reorder_puts_interleaved_layers_in_place():
    """napari's move_multiple scrambled [0, 4, 1, 5, ...]; the single moves do not."""
    from napari.components import LayerList
    from napari.layers import Image

    layers = LayerList([Image(np.zeros((2, 2)), name=n) for n in "abcdefgh"])
    reorder(layers, list("aebfcgdh"))
    assert "".join(layer.name for layer in layers) == "aebfcgdh"


@pytest.mark.gui
def test_three_methods_fill_a_docked_window_in_image_error_pairs(make_napari_viewer, sample_file, qtbot, tmp_path):
    import torch

    from backend.models import build_model, save_weights
    from conftest import docked_viewer
    from napari_nascsmri._layers import grid_of

    torch.manual_seed(0)
    weights = save_weights(build_model("dccnn", blocks=1, channels=4), tmp_path / "w.safetensors")
    viewer, widget, _ = docked_viewer(make_napari_viewer, sample_file, (1600, 1000))
    qtbot.wait(200)
    widget.method.value = "nasn"
    widget.weights.value = "shipped"
    widget.reconstruct()
    widget.method.value = "dccnn"
    widget.weights.value = "file"
    widget.weights_file.value = weights
    widget.reconstruct()
    qtbot.wait(300)
    height, width = viewer.canvas.size
    assert width < 0.6 * height * 2  # the docks leave a tall, narrow canvas
    assert tuple(grid_of(viewer).shape) == (-1, 2)
    names = [layer.name for layer in viewer.layers]
    for method in ("zero-filled", "nasn", "dccnn"):  # |error| right of its reconstruction
        assert names.index(widget._name(f"|error| {method}")) == names.index(widget._name(method)) + 1
    cell = min(viewer.canvas.viewbox_size(viewer.layers))
    assert cell > 1.15 * width / 4  # the rows as rows: 4 cells across
    # a wider canvas (docks closed) turns the grid back: each error map under its image
    viewer.window._qt_window.resize(2400, 700)
    viewer.window._qt_viewer.dockLayerControls.setVisible(False)
    viewer.window._qt_viewer.dockLayerList.setVisible(False)
    qtbot.waitUntil(lambda: tuple(grid_of(viewer).shape) == (-1, 4), timeout=5000)
