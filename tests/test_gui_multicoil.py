"""A multi-coil file in the reconstruction widget (issue #21) with real napari + Qt under Xvfb:
the widget reconstructs from the coils as the CLI does, and its zero-filled preview and k-space
view come from the undersampled coil data, not from the root-sum-of-squares emulation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_multicoil_networks import multicoil_file  # noqa: E402,F401 - the fixture

pytestmark = pytest.mark.gui


def test_widget_reconstructs_a_multicoil_file_from_its_coils(make_napari_viewer, multicoil_file):  # noqa: F811
    from backend.config import ReconConfig
    from backend.fft import ifft2c_np
    from backend.io import open_volume
    from backend.progress import run
    from backend.recon import reconstruct_volume
    from napari_nascsmri._widget import ReconstructionWidget

    viewer = make_napari_viewer()
    [source] = viewer.open(str(multicoil_file), plugin="napari-nascsmri")
    widget = ReconstructionWidget(viewer)
    widget.run_sync = True
    viewer.window.add_dock_widget(widget, name="Reconstruction", area="right")
    viewer.dims.set_current_step(0, 1)
    # the preview is the RSS of the zero-filled *coil* images under the widget's mask
    lines = widget.editor.lines
    with open_volume(multicoil_file) as volume:
        coils, _ = volume.coil_slice(1)
        rss_kspace = volume[1].kspace
    expected = np.sqrt((np.abs(ifft2c_np(coils * lines[None, None, :])) ** 2).sum(0))
    zf = viewer.layers[widget._name("zero-filled")]
    np.testing.assert_allclose(zf.data[1], expected, rtol=1e-4, atol=1e-4 * expected.max())
    emulated = np.abs(ifft2c_np(rss_kspace * lines[None, :]))
    assert np.abs(zf.data[1] - emulated).max() > 0.01 * expected.max()  # not the RSS emulation

    widget.method.value = "nasn"
    widget.weights.value = "shipped"
    widget.reconstruct()
    cli = run(reconstruct_volume(multicoil_file, ReconConfig(model="nasn", acceleration=widget.config().acceleration,
                                                              seed=widget.config().seed)))
    layer = viewer.layers[widget._name("nasn")]
    np.testing.assert_allclose(layer.data, cli.reconstruction, rtol=1e-4, atol=1e-4 * cli.reconstruction.max())
    assert any("SENSE data consistency" in n for n in widget.last_result.notices)
    assert widget.last_result.metrics.psnr == pytest.approx(cli.metrics.psnr, abs=1e-6)


def test_a_2d_mask_on_a_multicoil_file_uses_the_coils(make_napari_viewer, multicoil_file, qtbot):  # noqa: F811
    """A Poisson-disc pattern: the preview is the RSS of the zero-filled coil images under the
    pattern, the reconstruction equals the CLI's (coil path), and the coil maps are calibrated
    on the pattern's centre square."""
    from backend.coils import calibration_lines, coil_maps
    from backend.config import ReconConfig
    from backend.fft import ifft2c_np
    from backend.io import open_volume
    from backend.progress import run
    from backend.recon import reconstruct_volume
    from napari_nascsmri._widget import ReconstructionWidget

    viewer = make_napari_viewer()
    viewer.open(str(multicoil_file), plugin="napari-nascsmri")
    widget = ReconstructionWidget(viewer)
    widget.run_sync = True
    viewer.window.add_dock_widget(widget, name="Reconstruction", area="right")
    widget.mask_type.value = "poisson"
    pattern = widget.editor.pattern
    assert pattern is not None and pattern.ndim == 2
    viewer.dims.set_current_step(0, 1)
    with open_volume(multicoil_file) as volume:
        k, _ = volume.coil_slice(1)
    expected = np.sqrt((np.abs(ifft2c_np(k * pattern[None])) ** 2).sum(0))
    zf = viewer.layers[widget._name("zero-filled")]
    np.testing.assert_allclose(zf.data[1], expected, rtol=1e-4, atol=1e-4 * expected.max())
    widget.show_coils.value = True
    maps = viewer.layers[widget._name("coil maps")]
    h, w = k.shape[-2:]
    want = np.abs(coil_maps(k * pattern[None], calibration=calibration_lines(pattern), square=True))
    np.testing.assert_allclose(maps.data[:h, :w], want[0], rtol=1e-4, atol=1e-4)
    widget.show_coils.value = False

    widget.method.value = "nasn"
    widget.weights.value = "shipped"
    widget.reconstruct()
    config = widget.config()
    cli = run(reconstruct_volume(multicoil_file, ReconConfig(model="nasn", mask="poisson", acceleration=config.acceleration,
                                                              seed=config.seed)))
    np.testing.assert_array_equal(cli.mask.pattern, pattern)
    layer = viewer.layers[widget._name("nasn")]
    np.testing.assert_allclose(layer.data, cli.reconstruction, rtol=1e-4, atol=1e-4 * cli.reconstruction.max())
    assert any("calibration square" in n for n in widget.last_result.notices)


def test_coil_images_and_maps_as_layers(make_napari_viewer, multicoil_file, sample_file, qtbot):  # noqa: F811
    from backend.coils import calibration_lines, coil_maps
    from backend.fft import ifft2c_np
    from backend.io import open_volume
    from napari_nascsmri._widget import ReconstructionWidget

    viewer = make_napari_viewer()
    [single] = viewer.open(str(sample_file), plugin="napari-nascsmri")
    widget = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Reconstruction", area="right")
    assert widget.show_coils.native.isHidden()  # a single-coil file has no coils to show
    [source] = viewer.open(str(multicoil_file), plugin="napari-nascsmri")
    widget.source.value = source
    assert not widget.show_coils.native.isHidden()
    viewer.dims.set_current_step(0, 2)
    widget.show_coils.value = True  # the maps are estimated in a worker thread
    qtbot.waitUntil(lambda: widget._name("coil maps") in viewer.layers, timeout=30_000)
    images = viewer.layers[widget._name("coil images")]
    maps = viewer.layers[widget._name("coil maps")]
    assert images.metadata["nascsmri_coils"] == maps.metadata["nascsmri_coils"] == 8
    with open_volume(multicoil_file) as volume:
        k, _ = volume.coil_slice(2)
    h, w = k.shape[-2:]
    assert images.data.shape == maps.data.shape == (3 * h, 3 * w)  # 8 tiles on a 3 x 3 mosaic
    np.testing.assert_allclose(images.data[h:2 * h, 2 * w:3 * w], np.abs(ifft2c_np(k[5])), rtol=1e-4, atol=1e-3)
    lines = widget.editor.lines
    expected = np.abs(coil_maps(k * lines[None, None, :], calibration=calibration_lines(lines)))
    np.testing.assert_allclose(maps.data[:h, :w], expected[0], rtol=1e-4, atol=1e-4)
    assert images.data[2 * h:, 2 * w:].max() == 0  # the ninth tile is empty
    viewer.dims.set_current_step(0, 3)  # another slice: the mosaics follow
    qtbot.waitUntil(lambda: images.metadata["nascsmri_slice"] == 3, timeout=30_000)
    with open_volume(multicoil_file) as volume:
        k3, _ = volume.coil_slice(3)
    np.testing.assert_allclose(images.data[:h, :w], np.abs(ifft2c_np(k3[0])), rtol=1e-4, atol=1e-3)
    widget.show_coils.value = False
    assert widget._name("coil images") not in viewer.layers and widget._name("coil maps") not in viewer.layers
    widget.source.value = single
    assert widget.show_coils.native.isHidden()


def test_search_and_train_widgets_pass_the_coils_to_the_job(make_napari_viewer, tiny_dataset, tmp_path, job_env):
    from backend.cli import build_parser
    from backend.commands import job_config_from_args
    from napari_nascsmri._search_widget import SearchWidget
    from napari_nascsmri._train_widget import TrainWidget

    viewer = make_napari_viewer()
    for cls, kind in ((SearchWidget, "search"), (TrainWidget, "train")):
        widget = cls(viewer)
        widget.data.value = tiny_dataset
        assert widget.coils.value == 0
        widget.coils.value = 8
        config = widget.config()
        assert config.coils == 8
        argv = widget.argv(config, tmp_path / kind)
        rebuilt = job_config_from_args(build_parser().parse_args(argv[3:]), kind)
        assert rebuilt.coils == 8 and rebuilt == config
