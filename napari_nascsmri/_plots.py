"""Live plots of a search or training run: losses, validation PSNR, alphas, the derived cell.

A Qt widget holding a matplotlib ``FigureCanvasQTAgg`` (no pyplot, so the GUI process never
switches matplotlib's global backend) and, for a search, a label showing ``RUN/cell.png``
(drawn by the search itself with :func:`backend.search.plots.draw_cell` after every epoch).
It renders a :class:`~napari_nascsmri._job_process.RunTrace`; it holds no run state itself.
"""

from __future__ import annotations

import os
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


class LivePlots(QWidget):
    """Loss curves + validation PSNR (+ alphas heat map and cell picture for a search).

    Attributes: ``figure``, ``canvas``, ``ax_loss``, ``ax_psnr``, ``ax_alphas`` (search only),
    ``cell`` (QLabel, search only), ``drawn`` (what the last :meth:`render` plotted:
    ``{"steps": n, "epochs": n, "alphas": shape or None, "cell": path or None}``).
    """

    def __init__(self, kind: str, parent: QWidget | None = None):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        super().__init__(parent)
        self.kind = kind
        search = kind == "search"
        self.figure = Figure(figsize=(4.2, 5.2 if search else 2.3), dpi=90, facecolor=BACKGROUND,
                             layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(340 if search else 180)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        if search:
            grid = self.figure.add_gridspec(2, 2, height_ratios=(1, 1.5))
            self.ax_loss = self.figure.add_subplot(grid[0, 0])
            self.ax_psnr = self.figure.add_subplot(grid[0, 1])
            self.ax_alphas = self.figure.add_subplot(grid[1, :])
        else:
            self.ax_loss, self.ax_psnr = self.figure.subplots(1, 2)
            self.ax_alphas = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.cell = None
        self._cell_stamp = None
        if search:
            self.cell = QLabel("the derived cell appears after the first epoch")
            self.cell.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.cell.setMinimumHeight(90)
            self.cell.setStyleSheet("background: white; color: black;")
            layout.addWidget(self.cell)
        self.drawn: dict = {}
        self.clear()

    # ------------------------------------------------------------------------------------------
    def clear(self) -> None:
        self.drawn = {"steps": 0, "epochs": 0, "alphas": None, "cell": None}
        self._cell_stamp = None
        self._cell_pixmap = None
        if self.cell is not None:
            self.cell.clear()
            self.cell.setMinimumHeight(90)
            self.cell.setMaximumHeight(16777215)
            self.cell.setText("the derived cell appears after the first epoch")
        for ax, title in ((self.ax_loss, "L1 loss"), (self.ax_psnr, "validation PSNR (dB)"),
                          (self.ax_alphas, "alphas (softmax per edge)")):
            if ax is not None:
                ax.clear()
                _style(ax, title)
        self.canvas.draw_idle()

    def render(self, trace, space: str | None = None, nodes: int | None = None,
               run_dir: str | os.PathLike | None = None) -> None:
        """Redraw everything from ``trace`` (a RunTrace); ``space``/``nodes`` label the alphas."""
        history = trace.history
        steps_per_epoch = trace.steps_per_epoch
        self._draw_losses(trace, history, steps_per_epoch)
        self._draw_psnr(history)
        if self.ax_alphas is not None:
            self._draw_alphas(trace, space, nodes)
        if self.cell is not None and run_dir is not None:
            self._show_cell(Path(run_dir) / CELL_IMAGE)
        self.drawn.update(steps=sum(len(v) for v in trace.steps.values()), epochs=len(history))
        self.canvas.draw_idle()

    # ------------------------------------------------------------------------------------------
    def _draw_losses(self, trace, history, steps_per_epoch) -> None:
        ax = self.ax_loss
        ax.clear()
        _style(ax, "L1 loss")
        scale = float(steps_per_epoch) if steps_per_epoch else None
        for key, points in trace.steps.items():
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
            ax.legend(fontsize=6.5, facecolor=BACKGROUND, edgecolor=GRID, labelcolor=FOREGROUND)
        ax.set_xlabel("epoch", fontsize=7, color=FOREGROUND)

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
            ax.legend(fontsize=6.5, facecolor=BACKGROUND, edgecolor=GRID, labelcolor=FOREGROUND)
        ax.set_xlabel("epoch", fontsize=7, color=FOREGROUND)

    def _draw_alphas(self, trace, space, nodes) -> None:
        from backend.models import SPACES

        ax = self.ax_alphas
        for image in list(ax.images):
            if image.colorbar is not None:
                image.colorbar.remove()
        ax.clear()
        title = "alphas (softmax per edge)"
        if trace.alphas is None:
            _style(ax, title)
            self.drawn["alphas"] = None
            return
        weights = np.asarray(trace.alphas, dtype=float)
        edges, n_ops = weights.shape
        ops = list(SPACES.get(space, ())) if space else []
        if len(ops) != n_ops:
            ops = [f"op {k}" for k in range(n_ops)]
        if not nodes or sum(i + 2 for i in range(nodes)) != edges:
            nodes = next((n for n in range(1, 9) if sum(i + 2 for i in range(n)) == edges), None)
        rows = edge_labels(nodes) if nodes else [f"edge {e}" for e in range(edges)]
        # the colour range spans this epoch's weights: early alphas differ from uniform by little
        low, high = float(weights.min()), float(weights.max())
        image = ax.imshow(weights, aspect="auto", cmap="viridis", vmin=low, vmax=max(high, low + 1e-6),
                          interpolation="nearest")
        bar = self.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        bar.ax.yaxis.get_offset_text().set(color=FOREGROUND, fontsize=6)
        bar.ax.tick_params(labelsize=6, colors=FOREGROUND)
        ax.set_xticks(range(n_ops), [o.replace("_conv", "").replace("_connect", "") for o in ops],
                      rotation=25, ha="right", fontsize=6.5)
        ax.set_yticks(range(edges), rows, fontsize=6.5)
        if trace.genotype and nodes:
            for edge, _, op in kept_edges(trace.genotype, nodes):
                if op in ops and edge < edges:
                    ax.add_patch(_rect(ops.index(op), edge))
        epoch = max(trace.epochs) + 1 if trace.epochs else 0
        _style(ax, f"alphas after epoch {epoch} (softmax per edge; boxes: derived cell)", grid=False)
        self.drawn["alphas"] = weights.shape

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
        """The cell picture at the widget's width, the label as tall as the picture."""
        pixmap = getattr(self, "_cell_pixmap", None)
        if self.cell is None or pixmap is None:
            return
        scaled = pixmap.scaledToWidth(max(self.width(), 200), Qt.TransformationMode.SmoothTransformation)
        self.cell.setFixedHeight(max(scaled.height(), 60))
        self.cell.setPixmap(scaled)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_cell()


def _rect(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="white", lw=1.6)


def _style(ax, title: str, grid: bool = True) -> None:
    ax.set_facecolor(BACKGROUND)
    ax.set_title(title, fontsize=8, color=FOREGROUND)
    ax.tick_params(labelsize=6.5, colors=FOREGROUND)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    if grid:
        ax.grid(True, color=GRID, lw=0.5)
