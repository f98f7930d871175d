"""Live plots of a search or training run: losses, validation PSNR, alphas, the derived cell.

A Qt widget showing a matplotlib figure drawn off the GUI thread with the Agg canvas (no pyplot,
so the GUI process never switches matplotlib's global backend) and, for a search, a label showing ``RUN/cell.png``
(drawn by the search itself with :func:`backend.search.plots.draw_cell` after every epoch).
It renders a :class:`~napari_nascsmri._job_process.RunTrace`; it holds no run state itself.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

# napari's dark theme
BACKGROUND, FOREGROUND, GRID = "#262930", "#d6d6d6", "#414851"
LOSS_COLOURS = {"loss_w": "tab:blue", "loss_alpha": "tab:orange", "loss": "tab:blue"}
EPOCH_LOSS_KEYS = {"search": ("loss_w", "loss_alpha"), "train": ("train_loss",)}
LOSS_LABELS = {"loss_w": "weights (train_w)", "loss_alpha": "alphas (train_alpha)", "loss": "train",
               "train_loss": "train"}
CELL_IMAGE = "cell.png"
#: Height (px) of the cell picture: fixed, so that the picture never resizes its own parent.
CELL_HEIGHT = 170
#: Font sizes (pt) of titles and tick / legend labels.
TITLE_PT, LABEL_PT = 9, 8
#: Seconds between two draws of the figure (requests in between are coalesced).
MIN_DRAW_S = 1.5
#: matplotlib's Agg renderer and FreeType fonts are not thread-safe: every draw of a figure in
#: this plugin, on a worker thread or on the GUI thread, holds this lock (two drawing threads at
#: once crashed the interpreter in the test suite).
MPL_LOCK = threading.Lock()


def edge_labels(nodes: int) -> list[str]:
    """One label per supernet edge, in the supernet's order (node i reads inputs 0 .. i + 1)."""
    names = ["C(l-2)", "C(l-1)"] + [f"node {k}" for k in range(1, nodes)]
    return [f"node {i + 1} \u2190 {names[j]}" for i in range(nodes) for j in range(i + 2)]


def kept_edges(genotype: dict, nodes: int) -> list[tuple[int, int, str]]:
    """``(edge index, input index, op name)`` of every edge a genotype dict keeps."""
    from backend.search.supernet import edge_offsets

    offsets = edge_offsets(nodes)
    out = []
    for i, node in enumerate(genotype.get("nodes", [])[:nodes]):
        for op, src in node:
            out.append((offsets[i] + int(src), int(src), op))
    return out


class _Snapshot:
    """A copy of what :meth:`LivePlots.render` draws (the trace keeps changing on the GUI thread)."""

    def __init__(self, trace):
        self.steps = {k: list(v) for k, v in trace.steps.items()}
        self.history = [dict(r) for r in trace.history]
        self.steps_per_epoch = trace.steps_per_epoch
        self.alphas = None if trace.alphas is None else np.array(trace.alphas, dtype=float)
        self.genotype = trace.genotype
        self.epochs = sorted(trace.epochs)


class _PlotView(QLabel):
    """Shows the figure rendered off the GUI thread; a constant size hint (matplotlib's Qt
    canvas hints its current size, and a layout that honours it grows without end)."""

    def __init__(self, hint: tuple[int, int]):
        super().__init__()
        self._hint = hint
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(hint[1])
        self.setMinimumWidth(120)
        self.setStyleSheet(f"background: {BACKGROUND};")

    def sizeHint(self):  # noqa: N802 - Qt override
        from qtpy.QtCore import QSize

        return QSize(*self._hint)


class LivePlots(QWidget):
    """Loss curves + validation PSNR (+ alphas heat map and cell picture for a search).

    The matplotlib figure (``figure``, no pyplot) is drawn by a worker thread into an Agg
    buffer and shown as a picture in ``canvas`` (a QLabel): a draw takes 0.1-0.5 s on a busy
    CPU and would stall napari on the GUI thread. Requests made while a draw runs are
    coalesced (the latest wins). Attributes: ``ax_loss``, ``ax_psnr``, ``ax_alphas`` (search
    only), ``cell`` (QLabel, search only), ``drawn`` (what the last :meth:`render` asked for:
    ``{"steps": n, "epochs": n, "alphas": shape or None, "cell": path or None}``),
    ``render_count``, ``draw_count`` and :attr:`busy`.
    """


    def __init__(self, kind: str, parent: QWidget | None = None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from backend.models import SPACES

        super().__init__(parent)
        self.kind = kind
        self._spaces = SPACES
        search = kind == "search"
        self._hint = (380, 470 if search else 220)
        self.figure = Figure(figsize=(self._hint[0] / 90, self._hint[1] / 90), dpi=90,
                             facecolor=BACKGROUND, layout="constrained")
        self._agg = FigureCanvasAgg(self.figure)
        if search:
            grid = self.figure.add_gridspec(2, 2, height_ratios=(1, 1.5))
            self.ax_loss = self.figure.add_subplot(grid[0, 0])
            self.ax_psnr = self.figure.add_subplot(grid[0, 1])
            self.ax_alphas = self.figure.add_subplot(grid[1, :])
        else:
            self.ax_loss, self.ax_psnr = self.figure.subplots(1, 2)
            self.ax_alphas = None
        self.canvas = _PlotView(self._hint)
        self.canvas.setToolTip("losses per step (thin) and per epoch (dots), validation PSNR"
                               + ("; alphas per edge after the last epoch" if search else ""))
        self.canvas.installEventFilter(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.cell = None
        self._cell_stamp = None
        self._cell_pixmap = None
        self._cell_fit: tuple | None = None
        self._colorbar = None
        self._busy = False
        self._pending = None
        self._scheduled = False
        self._last_draw = -1e9
        self._drawn_width = None
        self.render_count = self.draw_count = 0
        # the worker thread only stores its picture; this GUI-thread timer collects it (no Qt call
        # from the worker, which raced with the widget's deletion and crashed the interpreter)
        from qtpy.QtCore import QTimer

        self._result = None
        self._collect = QTimer(self)
        self._collect.setInterval(40)
        self._collect.timeout.connect(self._collect_result)
        if search:
            self.cell = QLabel("the derived cell appears after the first epoch")
            self.cell.setAlignment(Qt.AlignmentFlag.AlignCenter)
            # fixed height, any width: the picture is fitted into the label, never the reverse
            self.cell.setFixedHeight(CELL_HEIGHT)
            self.cell.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            self.cell.setMinimumWidth(50)
            self.cell.setStyleSheet("background: white; color: black;")
            self.cell.setToolTip(f"the cell derived after the last epoch (RUN/{CELL_IMAGE})")
            self.cell.installEventFilter(self)
            layout.addWidget(self.cell)
        self.drawn: dict = {}
        self.clear()

    # ------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a draw runs or waits."""
        return self._busy or self._pending is not None

    def clear(self) -> None:
        self.drawn = {"steps": 0, "epochs": 0, "alphas": None, "cell": None}
        self._cell_stamp = None
        self._cell_pixmap = None
        self._cell_fit = None
        if self.cell is not None:
            self.cell.clear()
            self.cell.setText("the derived cell appears after the first epoch")
        self._request(("clear",))

    def render(self, trace, space: str | None = None, nodes: int | None = None,
               run_dir: str | os.PathLike | None = None) -> None:
        """Redraw everything from ``trace`` (a RunTrace); ``space``/``nodes`` label the alphas."""
        snap = _Snapshot(trace)
        if self.ax_alphas is not None:
            self.drawn["alphas"] = None if snap.alphas is None else tuple(snap.alphas.shape)
        if self.cell is not None and run_dir is not None:
            self._show_cell(Path(run_dir) / CELL_IMAGE)
        self.drawn.update(steps=sum(len(v) for v in snap.steps.values()), epochs=len(snap.history))
        self.render_count += 1
        self._request(("render", snap, space, nodes))

    # ------------------------------------------------------------------------ drawing thread --
    def _request(self, job) -> None:
        self._pending = job
        if not self._busy:
            self._start()

    def _start(self) -> None:
        if self._pending is None:
            return
        import time

        wait = self._last_draw + MIN_DRAW_S - time.monotonic()
        if wait > 0:  # a draw holds the GIL now and then: a few per second at most
            if not self._scheduled:
                from qtpy.QtCore import QTimer

                self._scheduled = True
                QTimer.singleShot(int(wait * 1000) + 1, self._start_scheduled)
            return
        job, self._pending = self._pending, None
        self._busy = True
        self._last_job = job
        size = (max(self.canvas.width(), 120), self._hint[1])
        threading.Thread(target=self._work, args=(job, size), daemon=True,
                         name="nascsmri-plots").start()
        self._collect.start()

    def _work(self, job, size) -> None:
        """Worker thread: the only place that touches the figure after construction."""
        try:  # below the GUI thread for the OS scheduler (Linux: per-thread nice)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        try:
            with MPL_LOCK:
                image = self._draw_job(job, size)
        except Exception:  # noqa: BLE001 - a failed draw must not kill the thread silently
            import traceback

            traceback.print_exc()
            image = None
        self._result = (image, size[0])

    def _collect_result(self) -> None:
        result, self._result = self._result, None
        if result is not None:
            self._collect.stop()
            self._on_rendered(result)

    def _draw_job(self, job, size) -> np.ndarray:
        """Draw one job into the Agg buffer (the caller holds :data:`MPL_LOCK`)."""
        self.figure.set_size_inches(size[0] / self.figure.dpi, size[1] / self.figure.dpi)
        if job[0] == "clear":
            for ax, title in ((self.ax_loss, "L1 loss"), (self.ax_psnr, "validation PSNR (dB)"),
                              (self.ax_alphas, "alphas (softmax per edge)")):
                if ax is not None:
                    ax.clear()
                    _style(ax, title)
            self._remove_colorbar()
        else:
            _, snap, space, nodes = job
            self._draw_losses(snap)
            self._draw_psnr(snap.history)
            if self.ax_alphas is not None:
                self._draw_alphas(snap, space, nodes)
        self._agg.draw()
        return np.asarray(self._agg.buffer_rgba()).copy()

    def _start_scheduled(self) -> None:
        self._scheduled = False
        if not self._busy:
            self._start()

    def _on_rendered(self, result) -> None:
        import time

        from qtpy.QtGui import QImage

        image, width = result
        self._busy = False
        self._last_draw = time.monotonic()
        self.draw_count += 1
        if image is not None:
            h, w = image.shape[:2]
            qimage = QImage(image.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
            self.canvas.setPixmap(QPixmap.fromImage(qimage.copy()))
            self._drawn_width = width
        self._start()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        from qtpy.QtCore import QEvent

        if event.type() == QEvent.Type.Resize:
            if obj is self.cell:
                self._fit_cell()
            elif obj is self.canvas and self._drawn_width is not None and not self.busy \
                    and abs(self.canvas.width() - self._drawn_width) > 8:
                self._request(getattr(self, "_last_job", ("clear",)))  # same content, new width
        return False

    # ------------------------------------------------------------------------------------------
    def colorbar_count(self) -> int:
        """Axes of the figure besides the plots (colourbars): 1 once alphas were drawn."""
        plots = {self.ax_loss, self.ax_psnr, self.ax_alphas}
        return sum(ax not in plots for ax in self.figure.axes)

    def _remove_colorbar(self) -> None:
        if self._colorbar is not None:
            try:
                self._colorbar.remove()
            except (AttributeError, ValueError, KeyError):
                pass
            self._colorbar = None

    def _draw_losses(self, snap) -> None:
        ax = self.ax_loss
        ax.clear()
        _style(ax, "L1 loss")
        history, steps_per_epoch = snap.history, snap.steps_per_epoch
        scale = float(steps_per_epoch) if steps_per_epoch else None
        for key, points in snap.steps.items():
            if points and scale:
                x, y = np.asarray(points, dtype=float).T
                ax.plot(x / scale, y, lw=0.8, alpha=0.45, color=LOSS_COLOURS.get(key, "tab:gray"))
        for key in EPOCH_LOSS_KEYS.get(self.kind, ()):
            pts = [(r["epoch"] + 1, r[key]) for r in history if r.get(key) is not None]
            if pts:
                x, y = np.asarray(pts, dtype=float).T
                colour = LOSS_COLOURS.get(key, LOSS_COLOURS.get("loss"))
                ax.plot(x, y, "o-", ms=3.5, lw=1.5, color=colour, label=LOSS_LABELS[key])
        if history:
            ax.legend(fontsize=LABEL_PT - 1, facecolor=BACKGROUND, edgecolor=GRID, labelcolor=FOREGROUND)
        _epoch_axis(ax)

    def _draw_psnr(self, history) -> None:
        ax = self.ax_psnr
        ax.clear()
        _style(ax, "validation PSNR (dB)")
        for key, colour, label in (("psnr", "tab:green", "mean"), ("psnr_4x", "tab:cyan", "4x"),
                                   ("psnr_8x", "tab:pink", "8x")):
            pts = [(r["epoch"] + 1, r[key]) for r in history if r.get(key) is not None]
            if pts:
                x, y = np.asarray(pts, dtype=float).T
                ax.plot(x, y, "o-" if key == "psnr" else ".--", ms=3.5, lw=1.5 if key == "psnr" else 0.8,
                        color=colour, label=label)
        if history and any("psnr" in r for r in history):
            ax.legend(fontsize=LABEL_PT - 1, facecolor=BACKGROUND, edgecolor=GRID, labelcolor=FOREGROUND)
        _epoch_axis(ax)

    def _draw_alphas(self, snap, space, nodes) -> None:
        ax = self.ax_alphas
        self._remove_colorbar()
        ax.clear()
        title = "alphas (softmax per edge)"
        if snap.alphas is None:
            _style(ax, title)
            return
        weights = snap.alphas
        edges, n_ops = weights.shape
        ops = list(self._spaces.get(space, ())) if space else []
        if len(ops) != n_ops:
            ops = [f"op {k}" for k in range(n_ops)]
        if not nodes or sum(i + 2 for i in range(nodes)) != edges:
            nodes = next((n for n in range(1, 9) if sum(i + 2 for i in range(n)) == edges), None)
        rows = edge_labels(nodes) if nodes else [f"edge {e}" for e in range(edges)]
        # the colour range spans this epoch's weights: early alphas differ from uniform by little
        low, high = float(weights.min()), float(weights.max())
        image = ax.imshow(weights, aspect="auto", cmap="viridis", vmin=low, vmax=max(high, low + 1e-6),
                          interpolation="nearest")
        bar = self._colorbar = self.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        bar.ax.yaxis.get_offset_text().set(color=FOREGROUND, fontsize=LABEL_PT - 1)
        bar.ax.tick_params(labelsize=LABEL_PT - 1, colors=FOREGROUND)
        ax.set_xticks(range(n_ops), [o.replace("_conv", "").replace("_connect", "") for o in ops],
                      rotation=25, ha="right", fontsize=LABEL_PT)
        ax.set_yticks(range(edges), rows, fontsize=LABEL_PT)
        if snap.genotype and nodes:
            for edge, _, op in kept_edges(snap.genotype, nodes):
                if op in ops and edge < edges:
                    ax.add_patch(_rect(ops.index(op), edge))
        epoch = max(snap.epochs) + 1 if snap.epochs else 0
        _style(ax, f"alphas after epoch {epoch} (boxes: derived cell)", grid=False)

    def _show_cell(self, path: Path) -> None:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return
        if stamp == self._cell_stamp:
            return
        pixmap = QPixmap(str(path))
        if pixmap.isNull():
            return
        self._cell_stamp = stamp
        self._cell_pixmap = pixmap
        self._fit_cell()
        self.drawn["cell"] = str(path)

    def _fit_cell(self) -> None:
        """The cell picture fitted into the fixed-height label (aspect kept); the label's size
        never depends on the picture, so a resize cannot feed back into another resize."""
        pixmap = self._cell_pixmap
        if self.cell is None or pixmap is None:
            return
        size = (max(self.cell.width(), 50), CELL_HEIGHT)
        if self._cell_fit == (size, self._cell_stamp):
            return
        self._cell_fit = (size, self._cell_stamp)
        scaled = pixmap.scaled(*size, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
        self.cell.setPixmap(scaled)


def _rect(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="white", lw=1.6)


def _epoch_axis(ax) -> None:
    """x axis in whole epochs."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch", fontsize=LABEL_PT, color=FOREGROUND)


def _style(ax, title: str, grid: bool = True) -> None:
    ax.set_facecolor(BACKGROUND)
    ax.set_title(title, fontsize=TITLE_PT, color=FOREGROUND)
    ax.tick_params(labelsize=LABEL_PT, colors=FOREGROUND)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    if grid:
        ax.grid(True, color=GRID, lw=0.5)
