"""No main-thread stall at the end of a volume reconstruction (issue 19, defect 10): a 10 ms
QTimer on the GUI thread of a real napari (Xvfb) while a background reconstruction runs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_gui_search_idle import TickMonitor  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def tiny_weights(tmp_path):
    import torch

    from backend.models import build_model, save_weights

    torch.manual_seed(0)
    return save_weights(build_model("dccnn", blocks=1, channels=4), tmp_path / "w.safetensors")


def test_no_stall_when_a_volume_reconstruction_ends(make_napari_viewer, sample_file, tiny_weights, qtbot):
    """The first run creates the method's layers (napari + software OpenGL: seconds, reported
    only); a second run of the same method must keep the GUI thread free at its end."""
    from napari_nascsmri._widget import ReconstructionWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open(str(sample_file), plugin="napari-nascsmri")
    widget = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Reconstruction", area="right")
    widget.method.value = "dccnn"
    widget.weights.value = "file"
    widget.weights_file.value = tiny_weights
    qtbot.wait(300)
    monitor = TickMonitor()
    returned_at: list[float] = []
    gaps_per_run = []
    for run in range(2):
        monitor.start()
        worker = widget.reconstruct()
        assert worker is not None
        worker.returned.connect(lambda *_: returned_at.append(time.perf_counter()))
        qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
        qtbot.wait(800)  # the redraws after the end count too
        gaps = monitor.stop()
        end = [g for g, t in zip(gaps, monitor.ends) if t >= returned_at[-1]]
        gaps_per_run.append((gaps, end))
        err = viewer.layers[widget._name("|error| dccnn")]
        assert err.data.shape == (8, 224, 224) and np.asarray(err.data).max() > 0
        assert widget.last_result.model == "dccnn" and widget.metrics["dccnn"]["volume"] is not None
    for run, (gaps, end) in enumerate(gaps_per_run):
        print(f"run {run}: {len(gaps)} ticks, max {max(gaps):.0f} ms, over 100 ms: "
              f"{[round(g) for g in gaps if g > 100]}; after the end: max {max(end):.0f} ms")
    gaps, end = gaps_per_run[1]
    # software OpenGL redraws a 9-cell grid in ~0.1 s: one redraw may pass 100 ms, no freeze
    assert max(end) < 400, end
    assert len([g for g in gaps if g > 100]) <= 3, gaps
