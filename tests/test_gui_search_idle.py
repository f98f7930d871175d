"""The Search widget after a finished search: no idle resize loop, one colourbar, no long stalls.

Real napari, real Qt under Xvfb, real ``nascsmri search`` processes on ``tiny_dataset`` (issue 19,
defects 1 and 2). The run folder is produced once per module by the CLI with tiny settings.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("job_env")]

JOB_TIMEOUT_MS = 180_000
IDLE_MS = 10_000


def cli_search(data, out, epochs=2, steps=2, extra=()):
    cmd = [sys.executable, "-m", "backend", "search", "--data", str(data), "--nodes", "2",
           "--channels", "4", "--cells", "1", "--epochs", str(epochs), "--steps-per-epoch", str(steps),
           "--crop", "32", "--device", "cpu", "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def finished_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli_search(tiny_dataset, out).wait(300) == 0
    assert (out / "genotype.json").exists() and (out / "cell.png").exists()
    return out


class TickMonitor:
    """A 10 ms QTimer on the GUI thread; records the gaps between its ticks (ms)."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.gaps: list[float] = []
        self.ends: list[float] = []  # perf_counter() at the end of each gap
        self._last = None
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000)
            self.ends.append(now)
        self._last = now

    def start(self):
        self._last = None
        self.gaps, self.ends = [], []
        self.timer.start()

    def stop(self):
        self.timer.stop()
        return self.gaps


def colourbars(qtbot, widget) -> int:
    """Colour bars painted beside the alphas map: runs 6-14 px wide of viridis' top colour
    (253, 231, 37) found on the rows of the painted charts (the map's cells are wider)."""
    qtbot.wait(200)
    image = widget.plots.image()
    rgb = np.array([[image.pixelColor(x, y).getRgb()[:3] for x in range(image.width())]
                    for y in range(0, image.height(), 2)], dtype=int)
    yellow = (np.abs(rgb - np.array([253, 231, 37])).max(axis=-1) <= 12)
    runs = set()
    for row in yellow:
        edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
        for start, stop in zip(edges[::2], edges[1::2]):
            if 6 <= stop - start <= 14:
                runs.add(int(start) // 4)
    return len(runs)


def dock_search(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-nascsmri", "Search")
    return widget


def test_idle_after_attached_finished_search_is_stable(make_napari_viewer, finished_run, qtbot):
    """Defect 1: after attaching a finished search the window does not grow and napari idles."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1400, 900)
    widget = dock_search(viewer)
    assert widget.attach(finished_run)
    qtbot.waitUntil(lambda: widget.trace.state == "done", timeout=30_000)
    assert widget.plots.drawn["cell"] is not None
    qtbot.wait(1500)  # let the first layout settle
    heights = [window.height()]
    cell_heights = [widget.plots.cell.height()]
    paints0, renders0 = widget.plots.paint_count, widget.plots.render_count
    cpus = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(IDLE_MS // 500):
        qtbot.wait(500)
        heights.append(window.height())
        cpus.append(round(time.process_time() - cpu0, 2))
        cell_heights.append(widget.plots.cell.height())
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    draws = widget.plots.paint_count - paints0
    renders = widget.plots.render_count - renders0
    print(f"window heights {heights[0]}..{heights[-1]}, cell heights {set(cell_heights)}, "
          f"CPU {cpu:.2f} s in {wall:.1f} s idle, {draws} plot paints, {renders} renders, last paint "
          f"{widget.plots.paint_ms:.1f} ms, CPU curve {cpus}")
    assert renders == 0 and draws <= 1, f"{renders} renders, {draws} plot repaints while idle"
    assert max(heights) - min(heights) <= 2, heights
    assert heights[-1] <= 1000, "the dock made the window taller than asked (900 px)"
    assert max(cell_heights) - min(cell_heights) <= 2, cell_heights
    assert cpu < 0.15 * wall, f"napari used {cpu:.2f} s CPU in {wall:.1f} s of idle"


def test_one_colourbar_after_search_resume_attach(make_napari_viewer, tiny_dataset, finished_run, tmp_path,
                                                 qtbot):
    """Defect 2: Search, then Resume, then Attach -> exactly one colourbar on the alphas map."""
    viewer = make_napari_viewer()
    widget = dock_search(viewer)
    widget.preset.value = "cpu"
    widget.data.value = tiny_dataset
    widget.space.value = "A"
    widget.nodes.value = 2
    widget.epochs.value = 2
    widget.steps_per_epoch.value = 2
    widget.crop.value = 32
    widget.channels.value = 4
    widget.cells.value = 1
    widget.device.value = "cpu"
    widget.out.value = tmp_path / "run"
    try:
        assert widget.start() is not None
        qtbot.waitUntil(lambda: widget.process is None and widget.trace.state == "done", timeout=JOB_TIMEOUT_MS)
        assert colourbars(qtbot, widget) == 1
        assert widget.resume() is not None  # a finished run resumes to "done" again
        qtbot.waitUntil(lambda: widget.process is None and widget.trace.state in ("done", "error"),
                        timeout=JOB_TIMEOUT_MS)
        assert colourbars(qtbot, widget) == 1
        assert widget.attach(finished_run)
        qtbot.waitUntil(lambda: widget.trace.state == "done", timeout=30_000)
        assert widget.plots.drawn["alphas"] is not None
        assert colourbars(qtbot, widget) == 1
    finally:
        if widget.process is not None and widget.process.alive:
            widget.process.kill()
            widget.process.wait(10)


def test_following_a_search_keeps_the_gui_responsive(make_napari_viewer, tiny_dataset, tmp_path, qtbot):
    """Defect 1 (second half): while following a live search, 10 ms timer ticks stay < 100 ms."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    widget = dock_search(viewer)
    out = tmp_path / "live"
    proc = cli_search(tiny_dataset, out, epochs=4, steps=6)
    monitor = TickMonitor()
    try:
        qtbot.waitUntil(lambda: (out / "config.json").exists(), timeout=JOB_TIMEOUT_MS)
        # the baseline: the same GUI not following anything, beside the same search process
        monitor.start()
        qtbot.wait(3000)
        baseline = monitor.stop()
        assert widget.attach(out)
        monitor.start()
        qtbot.waitUntil(lambda: widget.trace.state == "done", timeout=JOB_TIMEOUT_MS)
        qtbot.wait(1000)
        gaps = monitor.stop()
    finally:
        monitor.stop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert widget.plots.drawn["epochs"] == 4
    long = [g for g in gaps if g > 100]
    base_long = [g for g in baseline if g > 100]
    print(f"{len(gaps)} ticks, {len(long)} over 100 ms, max {max(gaps):.0f} ms, "
          f"renders {widget.plots.render_count}, last paint {widget.plots.paint_ms:.1f} ms; baseline (not following): "
          f"{len(baseline)} ticks, {len(base_long)} over 100 ms, max {max(baseline):.0f} ms")
    # the machine is shared with other jobs: compare with the baseline's scheduler hiccups
    allowed = len(gaps) * (len(base_long) / max(len(baseline), 1) + 0.025)
    assert len(long) <= max(2, allowed), sorted(long)[-10:]
    assert max(gaps) < max(300, 1.5 * max(baseline)), sorted(long)[-10:]


def test_search_method_warmup_and_signal(make_napari_viewer, tiny_dataset, tmp_path):
    """The Search widget's method / selection / warm-up reach the CLI; the epoch records'
    edge margins, entropy and no-signal flag are shown."""
    from backend.cli import build_parser
    from backend.commands import job_config_from_args
    from backend.runfiles import RunTrace
    from napari_nascsmri._search_widget import SearchWidget, signal_text

    widget = SearchWidget(make_napari_viewer())
    widget.data.value = tiny_dataset
    widget.method.value = "pc-darts"
    widget.select.value = "perturb"
    widget.warmup.value = 1
    config = widget.config()
    assert (config.method, config.select, config.warmup_epochs) == ("pc-darts", "perturb", 1)
    args = build_parser().parse_args(widget.argv(config, tmp_path / "run")[3:])
    rebuilt = job_config_from_args(args, "search")
    assert (rebuilt.method, rebuilt.select, rebuilt.warmup_epochs) == ("pc-darts", "perturb", 1)

    trace = RunTrace()
    assert signal_text(trace) == "-"
    trace.feed({"time": 1.0, "kind": "epoch", "done": 2, "total": 4, "epoch": 0, "warmup": False,
                "edge_margin": [0.2, 0.01], "chosen_margin": [0.2, 0.05], "edge_entropy": [1.0, 1.5],
                "uniform_entropy": 1.6, "no_signal": False, "no_signal_reason": ""})
    text = signal_text(trace)
    assert "0.050-0.200" in text and "1.25 of 1.60" in text and "no signal" not in text
    trace.feed({"time": 2.0, "kind": "epoch", "done": 4, "total": 4, "epoch": 1, "warmup": True,
                "chosen_margin": [0.001], "edge_entropy": [1.6], "uniform_entropy": 1.6,
                "no_signal": True, "no_signal_reason": "the alphas were never trained"})
    assert "no signal" in signal_text(trace) and "never trained" in signal_text(trace)
