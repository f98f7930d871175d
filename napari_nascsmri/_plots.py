"""Live plots of a search or training run: losses, validation PSNR, alphas, the derived cell.

A Qt widget painting its charts with QPainter (:mod:`napari_nascsmri._charts`) on the GUI thread,
in ``paintEvent``: a few milliseconds per paint, so nothing is drawn on a worker thread (the
earlier matplotlib figure was drawn on one, and crashed the interpreter beside Qt's event loop in
CI). For a search it also shows ``RUN/cell.png`` (drawn by the search itself with
:func:`backend.search.plots.draw_cell` after every epoch). It renders a
:class:`~backend.runfiles.RunTrace`; it holds no run state itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from qtpy.QtCore import QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from backend.runfiles import CELL_IMAGE

from ._charts import BACKGROUND, LineChart, Series, paint_heatmap, paint_lines

LOSS_COLOURS = {"loss_w": "tab:blue", "loss_alpha": "tab:orange", "loss": "tab:blue"}
EPOCH_LOSS_KEYS = {"search": ("loss_w", "loss_alpha"), "train": ("train_loss",)}
LOSS_LABELS = {"loss_w": "weights (train_w)", "loss_alpha": "alphas (train_alpha)", "loss": "train",
               "train_loss": "train"}
PSNR_SERIES = (("psnr", "tab:green", "mean"), ("psnr_4x", "tab:cyan", "4x"), ("psnr_8x", "tab:pink", "8x"))
#: Height (px) of the cell picture: fixed, so that the picture never resizes its own parent.
CELL_HEIGHT = 170


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
    """A copy of what :meth:`LivePlots.render` paints (the trace keeps changing)."""

    def __init__(self, trace=None):
        self.steps = {} if trace is None else {k: list(v) for k, v in trace.steps.items()}
        self.history = [] if trace is None else list(trace.history)  # frozen EpochRecords
        self.steps_per_epoch = None if trace is None else trace.steps_per_epoch
        self.alphas = None if trace is None or trace.alphas is None else np.array(trace.alphas, dtype=float)
        self.genotype = None if trace is None else trace.genotype
        self.epochs = [] if trace is None else sorted(trace.epochs)


def loss_chart(kind: str, snap: _Snapshot) -> LineChart:
    """Step losses (thin, faint) and epoch means (dots) against epochs."""
    chart = LineChart("L1 loss", xlabel="epoch")
    scale = float(snap.steps_per_epoch) if snap.steps_per_epoch else None
    for key, points in snap.steps.items():
        if points and scale:
            x, y = np.asarray(points, dtype=float).T
            chart.series.append(Series(x / scale, y, LOSS_COLOURS.get(key, "tab:gray"), width=0.8, alpha=0.45))
    for key in EPOCH_LOSS_KEYS.get(kind, ()):
        pts = [(r.epoch + 1, r.get(key)) for r in snap.history if r.get(key) is not None]
        if pts:
            x, y = np.asarray(pts, dtype=float).T
            chart.series.append(Series(x, y, LOSS_COLOURS.get(key, LOSS_COLOURS["loss"]), style="dots",
                                       label=LOSS_LABELS[key]))
    return chart


def psnr_chart(snap: _Snapshot) -> LineChart:
    chart = LineChart("validation PSNR (dB)", xlabel="epoch")
    for key, colour, label in PSNR_SERIES:
        pts = [(r.epoch + 1, r.get(key)) for r in snap.history if r.get(key) is not None]
        if pts:
            x, y = np.asarray(pts, dtype=float).T
            main = key == "psnr"
            chart.series.append(Series(x, y, colour, style="dots" if main else "dashed",
                                       width=1.5 if main else 0.8, label=label))
    return chart


class _Canvas(QWidget):
    """Paints its owner's charts; a constant size hint (the layout never grows it)."""

    def __init__(self, owner: "LivePlots", hint: tuple[int, int]):
        super().__init__()
        self._owner = owner
        self._hint = hint
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(hint[1])
        self.setMinimumWidth(120)

    def sizeHint(self):  # noqa: N802 - Qt override
        return QSize(*self._hint)

    def paintEvent(self, event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        try:
            self._owner.paint(painter, QRectF(self.rect()))
        finally:
            painter.end()


class LivePlots(QWidget):
    """Loss curves + validation PSNR (+ alphas heat map and cell picture for a search).

    :meth:`render` copies the trace and schedules a repaint; :meth:`paint` paints the copy.
    Attributes: ``canvas`` (the painted widget), ``has_alphas`` (search only), ``cell`` (QLabel,
    search only), ``drawn`` (what the last :meth:`render` asked for: ``{"steps": n,
    "epochs": n, "alphas": shape or None, "cell": path or None}``), ``render_count`` (renders
    asked for) and ``paint_count`` (paints done), ``paint_ms`` (the last paint's duration).
    """

    def __init__(self, kind: str, parent: QWidget | None = None):
        from backend.models import SPACES

        super().__init__(parent)
        self.kind = kind
        self._spaces = SPACES
        self.has_alphas = kind == "search"
        self._hint = (380, 470 if self.has_alphas else 220)
        self.canvas = _Canvas(self, self._hint)
        self.canvas.setToolTip("losses per step (thin) and per epoch (dots), validation PSNR"
                               + ("; alphas per edge after the last epoch" if self.has_alphas else ""))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.cell = None
        self._cell_stamp = None
        self._cell_pixmap = None
        self._cell_fit: tuple | None = None
        self._snap = _Snapshot()
        self._space = self._nodes = None
        self.render_count = self.paint_count = 0
        self.paint_ms = 0.0
        if self.has_alphas:
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
    def clear(self) -> None:
        self.drawn = {"steps": 0, "epochs": 0, "alphas": None, "cell": None}
        self._cell_stamp = None
        self._cell_pixmap = None
        self._cell_fit = None
        if self.cell is not None:
            self.cell.clear()
            self.cell.setText("the derived cell appears after the first epoch")
        self._snap = _Snapshot()
        self.canvas.update()

    def render(self, trace, space: str | None = None, nodes: int | None = None,
               run_dir: str | os.PathLike | None = None) -> None:
        """Show ``trace`` (a RunTrace); ``space``/``nodes`` label the alphas."""
        snap = _Snapshot(trace)
        if self.has_alphas:
            self.drawn["alphas"] = None if snap.alphas is None else tuple(snap.alphas.shape)
        if self.cell is not None and run_dir is not None:
            self._show_cell(Path(run_dir) / CELL_IMAGE)
        self.drawn.update(steps=sum(len(v) for v in snap.steps.values()), epochs=len(snap.history))
        self.render_count += 1
        self._snap, self._space, self._nodes = snap, space, nodes
        self.canvas.update()

    def image(self):
        """The charts as a QImage of the canvas's current size (tests, exports)."""
        return self.canvas.grab().toImage()

    # ------------------------------------------------------------------------------------------
    def paint(self, painter: QPainter, rect: QRectF) -> None:
        import time

        began = time.perf_counter()
        painter.fillRect(rect, QColor(BACKGROUND))
        snap = self._snap
        if self.has_alphas:
            top_h = rect.height() * 0.4
            top = QRectF(rect.left(), rect.top(), rect.width(), top_h)
            bottom = QRectF(rect.left(), rect.top() + top_h + 4, rect.width(), rect.height() - top_h - 4)
        else:
            top, bottom = rect, None
        half = top.width() / 2
        paint_lines(painter, QRectF(top.left(), top.top(), half - 2, top.height()), loss_chart(self.kind, snap))
        paint_lines(painter, QRectF(top.left() + half + 2, top.top(), half - 2, top.height()), psnr_chart(snap))
        if bottom is not None:
            self._paint_alphas(painter, bottom, snap)
        self.paint_count += 1
        self.paint_ms = (time.perf_counter() - began) * 1000

    def _paint_alphas(self, painter: QPainter, rect: QRectF, snap: _Snapshot) -> None:
        if snap.alphas is None:
            paint_heatmap(painter, rect, "alphas (softmax per edge)", None, [], [])
            return
        weights = snap.alphas
        edges, n_ops = weights.shape
        ops = list(self._spaces.get(self._space, ())) if self._space else []
        if len(ops) != n_ops:
            ops = [f"op {k}" for k in range(n_ops)]
        nodes = self._nodes
        if not nodes or sum(i + 2 for i in range(nodes)) != edges:
            nodes = next((n for n in range(1, 9) if sum(i + 2 for i in range(n)) == edges), None)
        rows = edge_labels(nodes) if nodes else [f"edge {e}" for e in range(edges)]
        boxes = []
        if snap.genotype and nodes:
            boxes = [(edge, ops.index(op)) for edge, _, op in kept_edges(snap.genotype, nodes)
                     if op in ops and edge < edges]
        epoch = max(snap.epochs) + 1 if snap.epochs else 0
        # the colour range spans this epoch's weights: early alphas differ from uniform by little
        paint_heatmap(painter, rect, f"alphas after epoch {epoch} (boxes: derived cell)", weights, rows,
                      [o.replace("_conv", "").replace("_connect", "") for o in ops], boxes)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        from qtpy.QtCore import QEvent

        if event.type() == QEvent.Type.Resize and obj is self.cell:
            self._fit_cell()
        return False

    # ------------------------------------------------------------------------------------------
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


